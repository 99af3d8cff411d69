"""Building the frame request an edge offloads: a JPEG, raw pixels, or the split tensor.

Synchronous (JPEG encoding and copying a frame's bytes are CPU work): the node calls
:func:`build_request` from a thread.
"""

from __future__ import annotations

from typing import Literal

from edge_node.local_model import LocalOutput
from edge_node.sources import CapturedFrame
from pipeline.codecs import encode_jpeg
from pipeline.protocol import FrameRequest, PayloadCodec, TensorDType

__all__ = ["build_request"]

Payload = Literal["jpeg", "raw", "tensor"]


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
    deadline_ms: float,
    model: str,
) -> FrameRequest:
    fields: dict[str, object]
    if payload == "tensor":
        if local is None or local.activation is None or split is None:
            raise ValueError("a tensor payload needs an early-exit local model's activation")
        activation = local.activation
        fields = {
            "codec": PayloadCodec.TENSOR,
            "split_stage": split,
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
        fields = {
            "codec": PayloadCodec.JPEG,
            "quality": jpeg_quality,
            "shape": tuple(frame.image.shape),
            "dtype": TensorDType.UINT8,
            "payload": encode_jpeg(frame.image, jpeg_quality),
        }
    return FrameRequest(
        frame_id=frame_id,
        edge_id=edge_id,
        seq=seq,
        capture_ts=frame.capture_ts,
        deadline_ts=frame.capture_ts + deadline_ms / 1000,
        model=model,
        edge_label=local.label if local else None,
        edge_confidence=local.confidence if local else None,
        **fields,  # type: ignore[arg-type]
    )
