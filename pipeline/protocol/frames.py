"""The frame request an edge publishes on ``{prefix}/frames/{edge_id}``."""

from __future__ import annotations

import enum
import math
from typing import ClassVar, Literal, Self, TypeVar

from pipeline.errors import ProtocolError
from pipeline.protocol import _wire
from pipeline.protocol._checks import check_id, check_range, safe_id

__all__ = ["MAX_PAYLOAD_BYTES", "FrameRequest", "PayloadCodec", "Task", "TensorDType"]

MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
"""Default ceiling on a frame payload; a 4K RGB frame as raw uint8 is ~25 MB, so raw
4K must be downscaled or JPEG-encoded before it is offloaded."""

ENVELOPE_ALLOWANCE = 65_536
"""Bytes a frame message may hold beyond its payload: the envelope's other fields."""

MAX_DIMS = 4
MAX_DIM_SIZE = 65_535


class PayloadCodec(enum.StrEnum):
    """How ``payload`` encodes the image or tensor."""

    JPEG = "jpeg"
    # A JPEG without its DQT/DHT tables and JFIF header: the receiver rebuilds the
    # standard tables for ``quality`` (see pipeline.codecs); ~300 bytes less per frame.
    JPEG_ABBREV = "jpeg-abbrev"
    RAW = "raw"  # raw pixels / input tensor, C-contiguous, shape + dtype given
    TENSOR = "tensor"  # intermediate activations after an early-exit edge part

    @property
    def is_jpeg(self) -> bool:
        return self in _JPEG_CODECS


_JPEG_CODECS = frozenset({PayloadCodec.JPEG, PayloadCodec.JPEG_ABBREV})


class TensorDType(enum.StrEnum):
    UINT8 = "uint8"
    FLOAT16 = "float16"
    FLOAT32 = "float32"

    @property
    def itemsize(self) -> int:
        return _ITEMSIZES[self.value]


_ITEMSIZES = {"uint8": 1, "float16": 2, "float32": 4}


class Task(enum.StrEnum):
    """What the edge asks of the frame; the reply's type follows (``Result`` for
    ``classify``, ``DetectionResult`` for ``detect``)."""

    CLASSIFY = "classify"
    DETECT = "detect"


class FrameRequest(_wire.WireMessage, frozen=True, kw_only=True):
    """One frame an edge asks a worker to classify, or to run a detector on.

    ``deadline_ts`` is absolute Unix time (edges and workers are expected to run NTP);
    a worker that cannot answer before it answers ``expired`` instead of computing.
    For ``jpeg`` and ``jpeg-abbrev`` the shape is the decoded (height, width, channels);
    for ``raw`` and ``tensor`` the payload length must equal the product of shape and
    item size. ``task`` ``None`` means classify and is left off the wire, so a
    classifying edge sends the bytes it always has, and a worker that predates
    detection refuses a ``detect`` request (an unknown field) instead of classifying it.
    """

    MESSAGE_TYPE: ClassVar[str] = "frame"
    MAX_BYTES: ClassVar[int] = _wire.MAX_MESSAGE_BYTES

    _t: Literal["frame"] = _wire.type_field(MESSAGE_TYPE)
    frame_id: _wire.Str
    edge_id: _wire.Str
    seq: int
    capture_ts: _wire.Float
    deadline_ts: _wire.Float
    codec: PayloadCodec
    shape: _wire.Ints
    dtype: TensorDType
    payload: bytes
    model: _wire.Str
    quality: int | None = None
    split_stage: int | None = None
    edge_label: int | None = None
    edge_confidence: _wire.Float | None = None
    # A uint8 tensor payload holds codes of ``value = code * tensor_scale +
    # tensor_offset`` (see pipeline.quantize); only a uint8 tensor has them.
    tensor_scale: _wire.Float | None = None
    tensor_offset: _wire.Float | None = None
    task: Task | None = None  # last: None (classify) is not written

    def __post_init__(self) -> None:
        fid = safe_id(self.frame_id)
        if fid is None:
            check_id(self.frame_id, "frame_id")  # raises: the id is not valid
        check_id(self.edge_id, "edge_id", fid)
        check_id(self.model, "model", fid)
        check_range(self.edge_confidence, "edge_confidence", 0.0, 1.0, fid)
        if self.seq < 0:
            raise ProtocolError("field 'seq' is negative", reason="bad_value", frame_id=fid)
        if len(self.payload) > MAX_PAYLOAD_BYTES:
            raise ProtocolError(
                f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD_BYTES}",
                reason="oversize",
                frame_id=fid,
            )
        shape = self.shape  # decoded as ints; min/max keep the check in C (hot path)
        if not 1 <= len(shape) <= MAX_DIMS or min(shape) < 1 or max(shape) > MAX_DIM_SIZE:
            raise ProtocolError(
                f"field 'shape': {self.shape!r} needs 1-{MAX_DIMS} dims of 1-{MAX_DIM_SIZE}",
                reason="bad_shape",
                frame_id=fid,
            )
        self._check_codec_fields(fid)

    def _check_codec_fields(self, fid: str | None) -> None:
        if self.codec.is_jpeg:
            if self.quality is None or not 1 <= self.quality <= 100:
                raise ProtocolError(
                    f"a {self.codec.value} frame needs 'quality' in 1-100",
                    reason="bad_value",
                    frame_id=fid,
                )
            if (
                self.dtype is not TensorDType.UINT8
                or len(self.shape) != 3
                or self.shape[2]
                not in (
                    1,
                    3,
                )
            ):
                raise ProtocolError(
                    f"a {self.codec.value} frame has dtype uint8 and shape (height, width, 1 or 3)",
                    reason="bad_shape",
                    frame_id=fid,
                )
        else:
            expected = math.prod(self.shape) * self.dtype.itemsize
            if expected != len(self.payload):
                raise ProtocolError(
                    f"shape {self.shape!r} as {self.dtype.value} needs {expected} bytes, "
                    f"payload has {len(self.payload)}",
                    reason="bad_shape",
                    frame_id=fid,
                )
            if self.quality is not None:
                raise ProtocolError(
                    f"'quality' only applies to jpeg, not {self.codec.value}",
                    reason="bad_value",
                    frame_id=fid,
                )
        if (self.codec is PayloadCodec.TENSOR) != (self.split_stage is not None):
            raise ProtocolError(
                "'split_stage' is required for tensor payloads and only for them",
                reason="bad_value",
                frame_id=fid,
            )
        if self.split_stage is not None and self.split_stage < 1:
            raise ProtocolError(
                "field 'split_stage' must be >= 1", reason="bad_value", frame_id=fid
            )
        quantized = self.codec is PayloadCodec.TENSOR and self.dtype is TensorDType.UINT8
        given = (self.tensor_scale is not None, self.tensor_offset is not None)
        if given != (quantized, quantized):
            raise ProtocolError(
                "'tensor_scale' and 'tensor_offset' are required for uint8 tensor payloads "
                "and only for them",
                reason="bad_value",
                frame_id=fid,
            )
        if self.tensor_scale is not None and self.tensor_scale <= 0:
            raise ProtocolError(
                f"field 'tensor_scale': {self.tensor_scale!r} is not > 0",
                reason="bad_value",
                frame_id=fid,
            )

    @property
    def wants_detection(self) -> bool:
        return self.task is Task.DETECT

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, *, max_payload_bytes: int = MAX_PAYLOAD_BYTES
    ) -> Self:
        """Decode and validate; raises :class:`ProtocolError` on anything wrong."""
        max_bytes = min(max_payload_bytes + ENVELOPE_ALLOWANCE, _wire.MAX_MESSAGE_BYTES)
        request = _wire.decode_fast(data, (cls,), max_bytes)
        if request is None:
            return cls.from_map(
                _wire.unpack_map(data, max_bytes=max_bytes), max_payload_bytes=max_payload_bytes
            )
        return check_payload_size(request, max_payload_bytes)

    @classmethod
    def from_map(
        cls, obj: dict[str, object], *, max_payload_bytes: int = MAX_PAYLOAD_BYTES
    ) -> Self:
        """Validate an already unpacked message (see :func:`_wire.unpack_map`)."""
        return check_payload_size(_wire.decode_as(cls, obj), max_payload_bytes)


R = TypeVar("R", bound=FrameRequest)


def check_payload_size(request: R, max_payload_bytes: int) -> R:
    """``request``, if its payload is within a receiver's own (lower) limit."""
    if len(request.payload) > max_payload_bytes:
        raise ProtocolError(
            f"payload of {len(request.payload)} bytes exceeds {max_payload_bytes}",
            reason="oversize",
            frame_id=request.frame_id,
        )
    return request
