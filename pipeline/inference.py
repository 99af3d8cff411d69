"""Batched classification with a registered model: images, input tensors, or an
early-exit edge's intermediate tensors continued from its split point.

Synchronous and CPU/GPU-bound on purpose: the worker calls these methods from its
inference thread so its event loop never waits on them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import torch
from torch import nn

from pipeline.codecs import Image
from pipeline.errors import ModelError
from pipeline.frozen import frozen_or_eager
from pipeline.models import EarlyExitResNet, ModelSpec, get_model_spec
from pipeline.quantize import QuantizedTensor, dequantize_batch
from pipeline.staging import HostStaging

__all__ = ["Classifier", "Prediction", "resolve_device"]

_TRACE_BATCH = 4  # the graph serves any batch size; tracing only needs an example


@dataclass(frozen=True, slots=True)
class Prediction:
    label: int
    topk_labels: tuple[int, ...]
    topk_scores: tuple[float, ...]


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (CUDA when available, else CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was asked for but torch sees no CUDA device")
    return torch.device(name)


class Classifier:
    """A model from the registry, on a device, with its own preprocessing.

    ``half`` runs the model in float16 (CUDA only: CPU kernels for it are slower than
    float32). Early-exit models also continue from any split point's activation.
    """

    def __init__(
        self,
        spec: ModelSpec,
        device: torch.device,
        *,
        topk: int = 5,
        half: bool = False,
        frozen: bool = True,
    ) -> None:
        if half and device.type != "cuda":
            raise ModelError("half precision needs a CUDA device; on the CPU it is slower")
        self.spec = spec
        self.device = device
        self.half = half
        self.frozen = frozen  # serve TorchScript graphs (pipeline/frozen.py), not eager
        self.dtype = torch.float16 if half else torch.float32
        self.topk = min(topk, len(spec.labels))
        self._staging = HostStaging(device)
        self._cloud_parts: dict[int, nn.Module] = {}
        self._split_shapes: dict[int, tuple[int, ...]] = {}
        self._network = spec.build_early_exit() if spec.build_early_exit else None
        if self._network is not None:
            self._network = self._network.to(device, self.dtype).eval()
            self._model: nn.Module = self._network.final_exit().eval()
            self._split_shapes = self._probe_split_shapes()
        else:
            self._model = spec.build().to(device, self.dtype).eval()
        if frozen:
            self._model = self._freeze(self._model, self.input_shape, "the whole model")
        self._mean = torch.tensor(spec.mean, device=device).view(1, spec.channels, 1, 1)
        self._std = torch.tensor(spec.std, device=device).view(1, spec.channels, 1, 1)

    @classmethod
    def by_name(
        cls, name: str, device: str = "cpu", *, half: bool = False, frozen: bool = True
    ) -> Classifier:
        return cls(get_model_spec(name), resolve_device(device), half=half, frozen=frozen)

    def _freeze(self, module: nn.Module, shape: tuple[int, ...], what: str) -> nn.Module:
        example = torch.zeros((_TRACE_BATCH, *shape), device=self.device, dtype=self.dtype)
        return frozen_or_eager(module, example, what=f"{self.spec.name}: {what}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of a normalised input tensor."""
        height, width = self.spec.input_size
        return (self.spec.channels, height, width)

    @property
    def network(self) -> EarlyExitResNet | None:
        """The whole early-exit network (on the device), or None for single-exit models."""
        return self._network

    @property
    def split_points(self) -> tuple[int, ...]:
        """Split points an edge may send an intermediate tensor from (empty if none)."""
        return tuple(sorted(self._split_shapes))

    def activation_shape(self, split: int) -> tuple[int, ...]:
        """(channels, height, width) of the edge's activation at ``split``."""
        try:
            return self._split_shapes[split]
        except KeyError:
            if not self._split_shapes:
                raise ModelError(f"{self.spec.name} has no split points") from None
            raise ModelError(
                f"{self.spec.name} continues from split points {self.split_points}, not {split}"
            ) from None

    def _probe_split_shapes(self) -> dict[int, tuple[int, ...]]:
        assert self._network is not None
        probe = torch.zeros((1, *self.input_shape), device=self.device, dtype=self.dtype)
        shapes = {}
        with torch.inference_mode():
            for split in range(1, self._network.config.num_stages + 1):
                activation = self._network.edge_part(split)(probe).activation
                shapes[split] = tuple(activation.shape[1:])
        return shapes

    def preprocess(self, images: Sequence[Image]) -> torch.Tensor:
        """BGR (or grey) uint8 HxWxC images -> a normalised NCHW batch on the device.

        Colour is converted to what the model takes: grey models get luma, RGB models
        get grey images replicated across channels.
        """
        height, width = self.spec.input_size
        channels = self.spec.channels
        host, batch = self._staging.array((len(images), height, width, channels), torch.uint8)
        for i, image in enumerate(images):
            if image.ndim == 3 and image.shape[2] == 1:
                image = image[:, :, 0]
            resized: np.ndarray = (
                image
                if image.shape[:2] == (height, width)
                else cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            )
            if channels == 1:
                batch[i, :, :, 0] = (
                    resized if resized.ndim == 2 else cv2.cvtColor(resized, cv2.COLOR_BGR2GRAY)
                )
            elif resized.ndim == 2:
                batch[i] = resized[:, :, None]
            else:
                batch[i] = resized[:, :, ::-1]  # BGR -> RGB
        # Upload uint8 (4x fewer bytes than float) and normalise on the device.
        tensor = self._staging.upload(host).permute(0, 3, 1, 2).to(self.dtype) / 255.0
        return (tensor - self._mean.to(self.dtype)) / self._std.to(self.dtype)

    def _stack(
        self, arrays: Sequence[np.ndarray | QuantizedTensor], shape: tuple[int, ...]
    ) -> torch.Tensor:
        if all(isinstance(a, QuantizedTensor) for a in arrays):
            # Stack the uint8 codes (a quarter of float32's bytes to copy, and to move to
            # a GPU) and dequantise the whole batch in one pass there.
            quantized = cast(Sequence[QuantizedTensor], arrays)
            codes, code_batch = self._staging.array((len(arrays), *shape), torch.uint8)
            for i, tensor in enumerate(quantized):
                code_batch[i] = tensor.codes
            return dequantize_batch(self._staging.upload(codes), quantized, self.dtype)
        plain = [a.dequantize() if isinstance(a, QuantizedTensor) else a for a in arrays]
        if self.dtype != torch.float16 and all(a.dtype == np.float16 for a in plain):
            # NumPy casts float16 one element at a time (~115 us for a 75 KB split
            # activation here); torch converts a whole batch with vector instructions
            # (~6 us a frame; docs/data/performance-history.md). Stacking stays a copy, and
            # on CUDA half the bytes cross the bus.
            half, half_batch = self._staging.array((len(plain), *shape), torch.float16)
            for i, array in enumerate(plain):
                half_batch[i] = array
            return self._staging.upload(half).to(self.dtype)
        host, batch = self._staging.array((len(plain), *shape), self.dtype)
        for i, array in enumerate(plain):
            batch[i] = array  # casts float32 (or a mix of dtypes) to the model's dtype
        return self._staging.upload(host)

    def predict(self, images: Sequence[Image]) -> list[Prediction]:
        """Classify a batch of images; one :class:`Prediction` per image, in order."""
        if not images:
            return []
        return self._classify(self._model, lambda: self.preprocess(images), len(images))

    def predict_inputs(self, tensors: Sequence[np.ndarray]) -> list[Prediction]:
        """Classify already-normalised input tensors of :attr:`input_shape`."""
        if not tensors:
            return []
        return self._classify(
            self._model, lambda: self._stack(tensors, self.input_shape), len(tensors)
        )

    def predict_from_split(
        self, split: int, activations: Sequence[np.ndarray | QuantizedTensor]
    ) -> list[Prediction]:
        """Finish the network from an edge part's activations at ``split`` (float16 or
        float32 arrays, or uint8 :class:`QuantizedTensor` codes)."""
        if not activations:
            return []
        shape = self.activation_shape(split)
        part = self._cloud_parts.get(split)
        if part is None:
            assert self._network is not None  # activation_shape() checked it
            part = self._network.cloud_part(split).eval()
            if self.frozen:
                part = self._freeze(part, shape, f"the cloud part after split {split}")
            self._cloud_parts[split] = part
        return self._classify(part, lambda: self._stack(activations, shape), len(activations))

    def _classify(
        self, module: nn.Module, make_input: Callable[[], torch.Tensor], count: int
    ) -> list[Prediction]:
        try:
            with torch.inference_mode():
                logits = module(make_input())
                probs = torch.softmax(logits.float(), dim=1)
                scores, labels = probs.topk(self.topk, dim=1)
            scores_list = scores.cpu().tolist()
            labels_list = labels.cpu().tolist()
        except (RuntimeError, ValueError, cv2.error) as exc:
            # torch reports shape, dtype and out-of-memory failures as RuntimeError.
            raise ModelError(f"{self.spec.name} failed on a batch of {count}: {exc}") from exc
        return [
            Prediction(
                label=int(lab[0]),
                topk_labels=tuple(int(x) for x in lab),
                topk_scores=tuple(min(1.0, max(0.0, float(s))) for s in sc),
            )
            for lab, sc in zip(labels_list, scores_list, strict=True)
        ]
