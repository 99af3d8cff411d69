"""Real JPEG codecs and capture sources."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_node import ImageFolderSource, open_source
from pipeline.codecs import decode_jpeg, encode_jpeg
from pipeline.errors import CodecError, SourceError


def test_jpeg_round_trip_and_quality_changes_size(frames: list[np.ndarray]) -> None:
    image = frames[0]
    high, low = encode_jpeg(image, 95), encode_jpeg(image, 20)
    assert len(low) < len(high) / 2
    decoded = decode_jpeg(high, expected_shape=image.shape)
    assert decoded.shape == image.shape
    assert np.abs(decoded.astype(int) - image.astype(int)).mean() < 3


def test_jpeg_decode_rejects_garbage_and_wrong_shape(frames: list[np.ndarray]) -> None:
    with pytest.raises(CodecError):
        decode_jpeg(b"\xff\xd8 definitely not a jpeg")
    data = encode_jpeg(frames[0], 80)
    with pytest.raises(CodecError, match="shape"):
        decode_jpeg(data, expected_shape=(10, 10, 3))
    with pytest.raises(CodecError):
        decode_jpeg(data[: len(data) // 3] + b"\x00" * 10, expected_shape=frames[0].shape)


def test_image_folder_skips_unreadable(tmp_path: Path, frames: list[np.ndarray]) -> None:
    cv2.imwrite(str(tmp_path / "a.jpg"), frames[0])
    (tmp_path / "b.jpg").write_bytes(b"not an image")
    cv2.imwrite(str(tmp_path / "c.png"), frames[1])
    source = ImageFolderSource(tmp_path)
    got = [source.read(), source.read(), source.read()]
    assert got[0] is not None
    assert got[1] is not None
    assert got[2] is None
    assert source.skipped == 1


def test_missing_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "nope.avi"))
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path))
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match="cannot open"):
        open_source(str(bad))
