"""Capture sources: the labelled data-set source, ``open_source`` forms, and broken input
(truncated or fake videos, folders of unreadable images) ending cleanly or clearly."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from camoffload.demo import default_video
from edge_node.sources import (
    CapturedFrame,
    DatasetSource,
    FrameSource,
    ImageFolderSource,
    VideoSource,
    _opencv_errors,
    open_source,
)
from pipeline.datasets import DEBIAN_FASHION_MNIST, LabelledImages, load_fashion_mnist
from pipeline.errors import SourceError

needs_fashion_mnist = pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian dataset-fashion-mnist is not installed"
)
VTEST_FRAMES = 795  # what the whole clip decodes to


@pytest.fixture(scope="module")
def test_set() -> LabelledImages:
    if not DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("Debian dataset-fashion-mnist is not installed")
    return load_fashion_mnist(split="test")


def read_all(source: FrameSource, bound: int = 100_000) -> list[CapturedFrame]:
    """Every frame, failing (not hanging) if the source never ends."""
    frames: list[CapturedFrame] = []
    for _ in range(bound):
        frame = source.read()
        if frame is None:
            return frames
        frames.append(frame)
    pytest.fail(f"{source.name} did not end within {bound} frames")


@needs_fashion_mnist
def test_the_data_set_source_yields_the_labelled_test_images(test_set: LabelledImages) -> None:
    source: FrameSource = DatasetSource()
    assert source.name == "fashion-mnist:test"
    assert source.fps is None
    assert not source.live
    before = time.time()
    frames = read_all(source)
    after = time.time()
    assert len(frames) == len(test_set) == 10_000
    for i, frame in enumerate(frames):
        assert frame.index == i
        assert frame.true_label == int(test_set.labels[i])
        assert isinstance(frame.true_label, int)
    assert all(before <= f.capture_ts <= after for f in frames)
    images = np.stack([f.image for f in frames])
    assert images.dtype == np.uint8
    assert images.shape == (10_000, 28, 28, 1)
    np.testing.assert_array_equal(images, test_set.images)
    assert source.read() is None  # and stays ended
    source.close()


@needs_fashion_mnist
def test_data_set_frames_are_read_only_views(test_set: LabelledImages) -> None:
    source = DatasetSource(limit=3)
    first, second = source.read(), source.read()
    assert first is not None
    assert second is not None
    assert first.image.base is not None  # a view, not a per-frame copy
    assert not first.image.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        first.image[0, 0, 0] = 1
    np.testing.assert_array_equal(second.image, test_set.images[1])


@needs_fashion_mnist
def test_a_limit_and_the_train_split() -> None:
    train = load_fashion_mnist(split="train")
    source = DatasetSource(split="train", limit=25)
    assert source.name == "fashion-mnist:train:25"
    assert len(source) == 25
    frames = read_all(source)
    assert [f.true_label for f in frames] == train.labels[:25].tolist()
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), train.images[:25])
    # The test split's first images differ from the train split's.
    test_first = DatasetSource(limit=1).read()
    assert test_first is not None
    assert not np.array_equal(test_first.image, train.images[0])


@needs_fashion_mnist
def test_close_ends_the_data_set_source() -> None:
    source = DatasetSource(limit=10)
    assert source.read() is not None
    source.close()
    assert source.read() is None


@needs_fashion_mnist
@pytest.mark.parametrize(
    ("spec", "name", "count"),
    [
        ("fashion-mnist", "fashion-mnist:test", 10_000),
        ("fashion-mnist:test", "fashion-mnist:test", 10_000),
        ("fashion-mnist:test:500", "fashion-mnist:test:500", 500),
        ("fashion-mnist:train:7", "fashion-mnist:train:7", 7),
        ("Fashion-MNIST:test:20000", "fashion-mnist:test:20000", 10_000),
    ],
)
def test_open_source_opens_data_sets(spec: str, name: str, count: int) -> None:
    source = open_source(spec)
    assert isinstance(source, DatasetSource)
    assert source.name == name
    assert len(source) == count
    assert read_all(source)[-1].index == count - 1


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("mnist:test", "'mnist' is unknown"),
        ("cifar10:train:5", "'cifar10' is unknown"),
        ("fashion-mnist:valid", "unknown split 'valid'"),
        ("fashion-mnist:", "unknown split ''"),
        ("fashion-mnist:test:0", "not a positive whole number"),
        ("fashion-mnist:test:ten", "not a positive whole number"),
        ("fashion-mnist:test:-5", "not a positive whole number"),
        ("fashion-mnist:test:5:6", "too many parts"),
    ],
)
def test_open_source_refuses_bad_data_set_specs(spec: str, match: str) -> None:
    with pytest.raises(SourceError, match=match) as info:
        open_source(spec)
    assert "fashion-mnist:test:500" in str(info.value)  # says what is accepted


def test_the_data_set_source_refuses_unknown_names_and_splits() -> None:
    with pytest.raises(SourceError, match="unknown data set 'cifar10'"):
        DatasetSource(name="cifar10")
    with pytest.raises(SourceError, match="unknown split 'val'"):
        DatasetSource(split="val")
    with pytest.raises(SourceError, match="at least 1"):
        DatasetSource(limit=0)


def test_a_missing_data_set_says_how_to_get_it(tmp_path: Path) -> None:
    nowhere = tmp_path / "fashion-mnist"
    with pytest.raises(SourceError, match="apt-get install dataset-fashion-mnist") as info:
        DatasetSource(root=nowhere)
    assert str(nowhere) in str(info.value)
    # The folder is there but holds no data set: the loader's message names what is missing.
    with pytest.raises(SourceError, match="t10k-images-idx3-ubyte") as info:
        DatasetSource(root=tmp_path)
    assert "dataset-fashion-mnist" in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_a_corrupt_data_set_is_a_source_error(tmp_path: Path) -> None:
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(b"\x00\x00\x08\x03 truncated")
    with pytest.raises(SourceError, match="truncated"):
        DatasetSource(root=tmp_path)


def test_a_truncated_video_ends_cleanly(tmp_path: Path, frames: list[np.ndarray]) -> None:
    # OpenCV (FFmpeg) opens it, as the header still claims all 795 frames, decodes up to
    # where the data stops and then reports the end.
    data = default_video().read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 3 // 10])
    source = open_source(str(cut))
    got = read_all(source, bound=VTEST_FRAMES + 10)
    assert 0 < len(got) < VTEST_FRAMES
    for frame, expected in zip(got, frames, strict=False):
        np.testing.assert_array_equal(frame.image, expected)  # the intact part is intact
    assert [f.index for f in got] == list(range(len(got)))
    assert source.read() is None
    source.close()
    assert source.read() is None


def test_a_video_cut_inside_its_header_does_not_open(tmp_path: Path) -> None:
    cut = tmp_path / "header.avi"
    cut.write_bytes(default_video().read_bytes()[:4096])
    with pytest.raises(SourceError, match="cannot open"):
        open_source(str(cut))


@pytest.mark.parametrize("name", ["noise.avi", "noise.mp4", "noise.mkv"])
def test_random_bytes_are_not_a_video(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(7).bytes(200_000))
    with pytest.raises(SourceError, match="cannot open"):
        open_source(str(path))
    with pytest.raises(SourceError, match="cannot open"):
        VideoSource(str(path))


def test_a_folder_of_unreadable_images_ends_cleanly(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    ok, jpeg = cv2.imencode(".jpg", frames[0])
    assert ok
    (tmp_path / "a.jpg").write_bytes(b"not an image")
    (tmp_path / "b.png").write_bytes(np.random.default_rng(1).bytes(5000))
    (tmp_path / "c.jpg").write_bytes(jpeg.tobytes()[:200])  # cut inside its headers
    (tmp_path / "d.png").write_bytes(b"")
    source = open_source(str(tmp_path))
    assert isinstance(source, ImageFolderSource)
    assert source.read() is None
    assert source.skipped == 4
    assert source.read() is None
    assert source.skipped == 4


def test_a_name_that_is_neither_file_nor_data_set(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "fashion-mnist:test"))  # a path: no data-set parsing
    with pytest.raises(SourceError, match="does not exist"):
        open_source("no-such-clip.avi")


def test_opencv_exceptions_become_one_line_source_errors() -> None:
    with (
        pytest.raises(SourceError, match="cannot read x: OpenCV failed") as info,
        _opencv_errors("cannot read x"),
    ):
        cv2.resize(np.zeros((0, 0), np.uint8), (4, 4))
    assert isinstance(info.value.__cause__, cv2.error)
    assert "\n" not in str(info.value)
