"""Image payload codecs (real JPEG via OpenCV), abbreviated JPEG, and raw-tensor packing.

An *abbreviated* JPEG (``jpeg-abbrev`` on the wire) is a baseline JPEG with its table
segments (DQT, DHT) and its JFIF APP0 header left out. libjpeg (and so OpenCV) encodes
with the JPEG standard's Annex K quantisation tables scaled by the IJG quality formula
and the standard Huffman tables, so the tables are a function of (quality, channels):
the receiver rebuilds them for the quality the envelope names and splices them back in,
and the result decodes to exactly the pixels of the full stream. On a 28x28 grey image
that is 303 of its ~750 bytes at quality 90. The encoder checks, per frame, that the
tables it strips are the ones the receiver will rebuild (an encoder that optimised its
Huffman tables would otherwise decode as garbage) and refuses with a :class:`CodecError`.

These are CPU-bound: callers on the event loop run them in a thread.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from pipeline.errors import CodecError
from pipeline.protocol import TensorDType

__all__ = [
    "decode_jpeg",
    "decode_jpeg_abbreviated",
    "encode_jpeg",
    "encode_jpeg_abbreviated",
    "jpeg_tables",
    "tensor_from_bytes",
]

Image = npt.NDArray[np.uint8]

_NUMPY_DTYPES: dict[TensorDType, type[np.generic]] = {
    TensorDType.UINT8: np.uint8,
    TensorDType.FLOAT16: np.float16,
    TensorDType.FLOAT32: np.float32,
}


def encode_jpeg(image: Image, quality: int) -> bytes:
    """Encode an HxW or HxWx3 (BGR) uint8 image as baseline JPEG at ``quality`` 1-100."""
    if not 1 <= quality <= 100:
        raise CodecError(f"JPEG quality must be 1-100, got {quality}")
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise CodecError(f"cannot JPEG-encode an array of {image.dtype} with shape {image.shape}")
    try:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    except cv2.error as exc:
        raise CodecError(f"JPEG encode failed: {exc}") from exc
    if not ok:
        raise CodecError(f"JPEG encode failed for shape {image.shape}")
    return buf.tobytes()


# 8K UHD is 33 Mpx; nothing a camera sends is bigger. Checked from the header.
MAX_JPEG_PIXELS = 64 * 1024 * 1024


def decode_jpeg(data: bytes, *, expected_shape: tuple[int, ...] | None = None) -> Image:
    """Decode JPEG bytes to an HxWx3 BGR (or HxWx1 grey) uint8 array.

    ``expected_shape`` (height, width, channels) guards against a payload that decodes
    to something other than what the envelope claims.
    """
    flags = cv2.IMREAD_GRAYSCALE if expected_shape and expected_shape[-1] == 1 else cv2.IMREAD_COLOR
    height, width = _frame_size(data)
    if expected_shape is not None and (height, width) != tuple(expected_shape[:2]):
        # Before decoding: a few hundred bytes can claim 20000x20000 pixels (a GB).
        raise CodecError(
            f"JPEG decodes to shape ({height}, {width}, ...) by its header, the request "
            f"says {tuple(expected_shape)}; refused before decoding"
        )
    if height * width > MAX_JPEG_PIXELS:
        raise CodecError(f"JPEG of {height}x{width} is over {MAX_JPEG_PIXELS} pixels")
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        raise CodecError(f"not a decodable JPEG: {exc}") from exc
    if image is None:
        raise CodecError(f"not a decodable JPEG ({len(data)} bytes)")
    if image.ndim == 2:
        image = image[:, :, None]
    if expected_shape is not None and tuple(image.shape) != tuple(expected_shape):
        raise CodecError(
            f"JPEG decodes to shape {tuple(image.shape)}, the request says {tuple(expected_shape)}"
        )
    return cast(Image, image)


def tensor_from_bytes(
    data: bytes, shape: tuple[int, ...], dtype: TensorDType
) -> npt.NDArray[np.generic]:
    """A read-only view of ``data`` as an array (no copy); the envelope checked the size."""
    array = np.frombuffer(data, dtype=_NUMPY_DTYPES[dtype])
    try:
        return array.reshape(shape)
    except ValueError as exc:
        raise CodecError(f"payload does not fit shape {shape} as {dtype.value}") from exc


# JPEG markers (ITU T.81 table B.1) that the abbreviated form handles.
_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_DQT, _DHT, _APP0 = 0xDB, 0xC4, 0xE0
_STRIPPED = frozenset({_DQT, _DHT, _APP0})
_TABLES = frozenset({_DQT, _DHT})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RSTn: no length field


def _segments(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(marker, whole segment) of each header segment up to and including SOS, then
    (-1, the entropy-coded rest). Raises :class:`CodecError` on a malformed header."""
    if data[:2] != b"\xff\xd8":
        raise CodecError("not a JPEG stream: it does not start with SOI (FF D8)")
    yield _SOI, data[:2]
    pos = 2
    while True:
        if pos + 4 > len(data):
            raise CodecError(f"JPEG header ends inside a marker at byte {pos}")
        if data[pos] != 0xFF:
            raise CodecError(f"JPEG header: expected a marker at byte {pos}, got {data[pos]:#04x}")
        marker = data[pos + 1]
        if marker in _STANDALONE or marker in (_SOI, _EOI):
            raise CodecError(f"JPEG header: unexpected marker FF {marker:02X} at byte {pos}")
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > len(data):
            raise CodecError(f"JPEG segment FF {marker:02X} at byte {pos} overruns the stream")
        yield marker, data[pos:end]
        pos = end
        if marker == _SOS:
            yield -1, data[pos:]
            return


# Start-of-frame markers (T.81 B.1.1.3): C0-CF but DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _frame_size(data: bytes) -> tuple[int, int]:
    """(height, width) from the JPEG's frame header, without decoding anything."""
    for marker, segment in _segments(data):
        if marker in _SOF:
            if len(segment) < 9:
                raise CodecError("JPEG frame header is truncated")
            return (
                int.from_bytes(segment[5:7], "big"),
                int.from_bytes(segment[7:9], "big"),
            )
        if marker == _SOS:
            break
    raise CodecError("JPEG has no frame header (SOF) before its scan")


@functools.lru_cache(maxsize=512)
def jpeg_tables(quality: int, channels: int) -> bytes:
    """The DQT and DHT segments this encoder writes at ``quality`` for 1- or 3-channel
    images, in its own order (cached: one tiny encode per quality and channel count)."""
    if channels not in (1, 3):
        raise CodecError(f"JPEG images have 1 or 3 channels, not {channels}")
    probe = np.zeros((8, 8) if channels == 1 else (8, 8, 3), dtype=np.uint8)
    full = encode_jpeg(probe, quality)
    return b"".join(seg for marker, seg in _segments(full) if marker in _TABLES)


def encode_jpeg_abbreviated(image: Image, quality: int) -> bytes:
    """:func:`encode_jpeg` without its tables and JFIF header; the receiver needs
    ``quality`` and the channel count to decode it (:func:`decode_jpeg_abbreviated`)."""
    full = encode_jpeg(image, quality)
    channels = 1 if image.ndim == 2 or image.shape[2] == 1 else 3
    kept: list[bytes] = []
    tables: list[bytes] = []
    for marker, segment in _segments(full):
        if marker in _TABLES:
            tables.append(segment)
        elif marker not in _STRIPPED:
            kept.append(segment)
    if b"".join(tables) != jpeg_tables(quality, channels):
        raise CodecError(
            f"this JPEG encoder did not use the standard tables at quality {quality}: "
            "an abbreviated stream would not decode; send a full JPEG"
        )
    return b"".join(kept)


def decode_jpeg_abbreviated(
    data: bytes, quality: int, *, expected_shape: tuple[int, int, int]
) -> Image:
    """Decode an abbreviated JPEG made at ``quality``: put the standard tables back
    after SOI and decode as :func:`decode_jpeg` (same pixels as the full stream)."""
    if not 1 <= quality <= 100:
        raise CodecError(f"JPEG quality must be 1-100, got {quality}")
    if len(expected_shape) != 3 or expected_shape[2] not in (1, 3):
        raise CodecError(f"an abbreviated JPEG has shape (h, w, 1 or 3), not {expected_shape}")
    markers = [marker for marker, _ in _segments(data)]  # validates the header
    if _SOS not in markers:  # pragma: no cover - _segments only returns after SOS
        raise CodecError("abbreviated JPEG has no scan")
    if any(marker in _TABLES for marker in markers):
        raise CodecError("an abbreviated JPEG must not carry its own DQT/DHT tables")
    full = data[:2] + jpeg_tables(quality, expected_shape[2]) + data[2:]
    return decode_jpeg(full, expected_shape=expected_shape)
