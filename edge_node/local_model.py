"""The edge's own model: an early-exit network's edge part, or a small whole model.

For an early-exit model (``fmnist_exit_resnet``) the edge runs the stem and stages up
to ``split`` and exit ``split``'s classifier: its answer is the local label, and its
activation is what a ``tensor`` offload sends, so the worker continues from stage
``split + 1`` instead of starting over. Any other registry model (``efficientnet_lite0``)
runs whole as the local classifier and can offload only images.

Synchronous and CPU-bound: the edge calls :meth:`LocalModel.classify` from a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.codecs import Image
from pipeline.detection import Detection
from pipeline.errors import ModelError
from pipeline.inference import Classifier, resolve_device
from pipeline.models import EdgePart, get_model_spec
from pipeline.quantize import QuantizedTensor, TensorWireDType, wire_activation

__all__ = ["LocalModel", "LocalOutput"]


@dataclass(frozen=True, slots=True)
class LocalOutput:
    label: int
    confidence: float  # max softmax probability of the local exit
    # The split activation (c, h, w) as it goes on the wire: uint8 codes or float16
    # (edge.tensor_dtype); None for whole models.
    activation: np.ndarray | QuantizedTensor | None
    # The exit's logits, float32 (classes,): what the entropy and router policies read;
    # None for whole models.
    logits: np.ndarray | None = None
    # A local detector's objects (task detect); None for a classifier. A detector has
    # no label: ``label`` is NO_LABEL and ``confidence`` its best score (0 if none).
    detections: tuple[Detection, ...] | None = None
    # A specialized model's count (task detect, edge.specialized): one (label, presence
    # probability) per object counted, where it stands unknown; ``detections`` is then
    # empty. None for every other model.
    counted: tuple[tuple[str, float], ...] | None = None

    @property
    def class_label(self) -> int | None:
        """The label, or None for a detector's output (which has none)."""
        return None if self.detections is not None else self.label

    @classmethod
    def detected(cls, detections: Sequence[Detection]) -> LocalOutput:
        best = max((d.score for d in detections), default=0.0)
        return cls(NO_LABEL, best, None, detections=tuple(detections))

    @classmethod
    def counting(cls, counted: Sequence[tuple[str, float]], sureness: float) -> LocalOutput:
        """A specialized model's answer: objects counted, no boxes."""
        return cls(NO_LABEL, sureness, None, detections=(), counted=tuple(counted))


NO_LABEL = -1


class LocalModel:
    """Classify one frame on the edge; for early-exit models, keep the split activation."""

    def __init__(
        self,
        name: str,
        *,
        split: int = 1,
        device: str = "cpu",
        tensor_dtype: TensorWireDType = "uint8",
    ) -> None:
        self.tensor_dtype = tensor_dtype
        self._classifier = Classifier(get_model_spec(name), resolve_device(device))
        self.name = name
        network = self._classifier.network
        self._edge: EdgePart | None = None
        if network is not None:
            if not 1 <= split <= network.config.num_stages - 1:
                raise ModelError(
                    f"{name}: an edge split must leave work for the cloud: "
                    f"1..{network.config.num_stages - 1}, not {split}"
                )
            self._edge = network.edge_part(split).eval()
        self.split = split if self._edge is not None else None
        self.labels = self._classifier.spec.labels

    @property
    def can_send_tensors(self) -> bool:
        return self._edge is not None

    def activation_shape(self) -> tuple[int, ...]:
        if self.split is None:
            raise ModelError(f"{self.name} is not an early-exit model: it has no split points")
        return self._classifier.activation_shape(self.split)

    def classify(self, image: Image) -> LocalOutput:
        if self._edge is None:
            prediction = self._classifier.predict([image])[0]
            return LocalOutput(prediction.label, prediction.topk_scores[0], None)
        with torch.inference_mode():
            output = self._edge(self._classifier.preprocess([image]))
            assert output.logits is not None  # split >= 1 always has an exit
            probs = torch.softmax(output.logits.float(), dim=1)[0]
            confidence, label = probs.max(dim=0)
            activation = wire_activation(output.activation[0], self.tensor_dtype)
            logits = output.logits[0].float().cpu().numpy()
        return LocalOutput(int(label), min(1.0, float(confidence)), activation, logits)
