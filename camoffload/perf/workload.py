"""The frames every contender is driven with: one payload kind, encoded once, up front.

Five payload kinds, as an edge can send them (docs/architecture.md):

    jpeg     the image as a JPEG at quality 90 (what a camera edge sends by default)
    raw      the uint8 pixels
    tensor   the normalised float32 input tensor (the seed study's binary tensors)
    split    the activation after stage ``split`` of the early-exit network as uint8
             codes with a per-frame scale and offset (an edge's default, pipeline.quantize)
    split16  the same activation as float16 (edge.tensor_dtype = float16)

Encoding happens before any timing, for the pipeline and the HTTP baseline alike: both
clients stand for edges that have their bytes ready.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from pipeline.codecs import encode_jpeg
from pipeline.datasets import load_fashion_mnist
from pipeline.inference import Classifier
from pipeline.protocol import FrameRequest, PayloadCodec, TensorDType
from pipeline.quantize import QuantizedTensor, quantize

__all__ = ["PAYLOADS", "PayloadKind", "Workload", "make_workload"]

PayloadKind = Literal["jpeg", "raw", "tensor", "split", "split16"]
PAYLOADS: tuple[PayloadKind, ...] = ("jpeg", "raw", "tensor", "split", "split16")
JPEG_QUALITY = 90


@dataclass(frozen=True, slots=True)
class Workload:
    """``count`` frames of one payload kind, with what each contender needs."""

    kind: PayloadKind
    model: str
    payloads: list[bytes]  # the body of each frame, as both transports send it
    labels: np.ndarray  # the true class of each frame
    codec: PayloadCodec
    dtype: TensorDType
    shape: tuple[int, ...]
    split: int | None
    model_inputs: Sequence[np.ndarray | QuantizedTensor]  # what the model alone is timed on
    # (scale, offset) of each frame's uint8 codes: the "split" kind only
    tensor_params: list[tuple[float, float]] | None = None

    @property
    def count(self) -> int:
        return len(self.payloads)

    @property
    def payload_bytes(self) -> float:
        return float(np.mean([len(p) for p in self.payloads]))

    def request(
        self, index: int, edge_id: str, run: str, *, now: float, deadline_s: float
    ) -> bytes:
        """Frame ``index``'s encoded request in ``run`` (its id is unique to the run)."""
        scale, offset = self.tensor_params[index] if self.tensor_params else (None, None)
        return FrameRequest(
            frame_id=f"{run}-{index}",
            edge_id=edge_id,
            seq=index,
            capture_ts=now,
            deadline_ts=now + deadline_s,
            codec=self.codec,
            quality=JPEG_QUALITY if self.codec is PayloadCodec.JPEG else None,
            shape=self.shape,
            dtype=self.dtype,
            payload=self.payloads[index],
            model=self.model,
            split_stage=self.split,
            tensor_scale=scale,
            tensor_offset=offset,
        ).to_bytes()

    def requests(self, edge_id: str, run: str, deadline_s: float = 600.0) -> list[bytes]:
        """The encoded frame requests of one run (frame ids unique to ``run``)."""
        now = time.time()
        return [
            self.request(i, edge_id, run, now=now, deadline_s=deadline_s) for i in range(self.count)
        ]


def make_workload(
    kind: PayloadKind, classifier: Classifier, count: int, *, split: int = 1
) -> Workload:
    """``count`` Fashion-MNIST test images as ``kind`` payloads for ``classifier``."""
    test = load_fashion_mnist(split="test").head(count)
    images = list(test.images)
    name = classifier.spec.name
    if kind == "jpeg":
        return Workload(
            kind, name, [encode_jpeg(image, JPEG_QUALITY) for image in images], test.labels,
            PayloadCodec.JPEG, TensorDType.UINT8, tuple(images[0].shape), None, images,
        )  # fmt: skip
    if kind == "raw":
        return Workload(
            kind, name, [image.tobytes() for image in images], test.labels,
            PayloadCodec.RAW, TensorDType.UINT8, tuple(images[0].shape), None, images,
        )  # fmt: skip
    with torch.inference_mode():
        inputs = classifier.preprocess(images).float().cpu()
        if kind == "tensor":
            arrays = [np.ascontiguousarray(t, dtype=np.float32) for t in inputs.numpy()]
            return Workload(
                kind, name, [a.tobytes() for a in arrays], test.labels, PayloadCodec.RAW,
                TensorDType.FLOAT32, tuple(arrays[0].shape), None, arrays,
            )  # fmt: skip
        network = classifier.network
        if network is None:
            raise ValueError(f"{name} is not an early-exit model: no split payload")
        activations = network.edge_part(split)(inputs.to(classifier.device)).activation
    if kind == "split":
        coded = [quantize(a) for a in activations]
        return Workload(
            kind, name, [c.codes.tobytes() for c in coded], test.labels, PayloadCodec.TENSOR,
            TensorDType.UINT8, coded[0].shape, split, coded,
            tensor_params=[(c.scale, c.offset) for c in coded],
        )  # fmt: skip
    halves = [np.ascontiguousarray(a, dtype=np.float16) for a in activations.cpu().numpy()]
    return Workload(
        kind, name, [a.tobytes() for a in halves], test.labels, PayloadCodec.TENSOR,
        TensorDType.FLOAT16, tuple(halves[0].shape), split, halves,
    )  # fmt: skip
