"""Building the frame request an edge offloads: a JPEG, raw pixels, or the split tensor
(uint8 codes with their scale and offset, or float16).

Synchronous (JPEG encoding and copying a frame's bytes are CPU work): the node calls
:func:`build_request` from a thread.
"""

from __future__ import annotations

from typing import Literal, cast

import cv2

from edge_node.local_model import LocalOutput
from edge_node.sources import CapturedFrame
from pipeline.codecs import Image, encode_jpeg, encode_jpeg_abbreviated
from pipeline.deadline import Deadline
from pipeline.protocol import FrameRequest, PayloadCodec, Task, TensorDType
from pipeline.quantize import QuantizedTensor

__all__ = ["Payload", "build_request", "scaled"]

Payload = Literal["jpeg", "raw", "tensor"]


def scaled(image: Image, scale: float) -> Image:
    """``image`` at ``scale`` of its resolution (area interpolation; at least 8 px)."""
    if scale >= 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    out = cast(Image, cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    return out[:, :, None] if image.ndim == 3 and out.ndim == 2 else out


def build_request(
    *,
    frame_id: str,
    edge_id: str,
    seq: int,
    frame: CapturedFrame,
    local: LocalOutput | None,
    split: int | None,
    payload: Payload,
    jpeg_quality: int,
    deadline: Deadline,
    model: str,
    jpeg_codec: PayloadCodec = PayloadCodec.JPEG,
    scale: float = 1.0,
    task: Task | None = None,
) -> FrameRequest:
    """The request for ``frame``; a JPEG payload is ``jpeg_codec`` (full or abbreviated)
    at ``jpeg_quality``, of the frame scaled by ``scale`` (the worker resizes it)."""
    fields: dict[str, object]
    if payload == "tensor":
        if local is None or local.activation is None or split is None:
            raise ValueError("a tensor payload needs an early-exit local model's activation")
        activation = local.activation
        fields = {"codec": PayloadCodec.TENSOR, "split_stage": split}
        if isinstance(activation, QuantizedTensor):
            fields |= {
                "shape": activation.shape,
                "dtype": TensorDType.UINT8,
                "payload": activation.codes.tobytes(),
                "tensor_scale": activation.scale,
                "tensor_offset": activation.offset,
            }
        else:
            fields |= {
                "shape": tuple(activation.shape),
                "dtype": TensorDType.FLOAT16,
                "payload": activation.tobytes(),
            }
    elif payload == "raw":
        fields = {
            "codec": PayloadCodec.RAW,
            "shape": tuple(frame.image.shape),
            "dtype": TensorDType.UINT8,
            "payload": frame.image.tobytes(),
        }
    else:
        image = scaled(frame.image, scale)
        encode = encode_jpeg_abbreviated if jpeg_codec is PayloadCodec.JPEG_ABBREV else encode_jpeg
        fields = {
            "codec": jpeg_codec,
            "quality": jpeg_quality,
            "shape": tuple(image.shape) if image.ndim == 3 else (*image.shape, 1),
            "dtype": TensorDType.UINT8,
            "payload": encode(image, jpeg_quality),
        }
    return FrameRequest(
        frame_id=frame_id,
        edge_id=edge_id,
        seq=seq,
        capture_ts=frame.capture_ts,
        deadline_ts=deadline.ts,
        model=model,
        edge_label=local.class_label if local else None,
        edge_confidence=local.confidence if local and local.detections is None else None,
        task=task,
        **fields,  # type: ignore[arg-type]
    )
