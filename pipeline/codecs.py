"""Image payload codecs (real JPEG via OpenCV) and raw-tensor packing.

These are CPU-bound: callers on the event loop run them in a thread.
"""

from __future__ import annotations

from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from pipeline.errors import CodecError
from pipeline.protocol import TensorDType

__all__ = ["decode_jpeg", "encode_jpeg", "tensor_from_bytes"]

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


def decode_jpeg(data: bytes, *, expected_shape: tuple[int, ...] | None = None) -> Image:
    """Decode JPEG bytes to an HxWx3 BGR (or HxWx1 grey) uint8 array.

    ``expected_shape`` (height, width, channels) guards against a payload that decodes
    to something other than what the envelope claims.
    """
    flags = cv2.IMREAD_GRAYSCALE if expected_shape and expected_shape[-1] == 1 else cv2.IMREAD_COLOR
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
