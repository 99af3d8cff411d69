"""Models: the early-exit network, its weights on disk, the registry, MAC counts."""

from pipeline.models.early_exit import (
    CloudPart,
    EarlyExitConfig,
    EarlyExitResNet,
    EdgeOutput,
    EdgePart,
    FinalExit,
)
from pipeline.models.registry import ModelSpec, available_models, get_model_spec
from pipeline.models.weights import (
    WeightsManifest,
    default_models_dir,
    load_early_exit,
    read_manifest,
    save_weights,
)

__all__ = [
    "CloudPart",
    "EarlyExitConfig",
    "EarlyExitResNet",
    "EdgeOutput",
    "EdgePart",
    "FinalExit",
    "ModelSpec",
    "WeightsManifest",
    "available_models",
    "default_models_dir",
    "get_model_spec",
    "load_early_exit",
    "read_manifest",
    "save_weights",
]
