"""Models: the early-exit network, its weights on disk, the registry, MAC counts, the
hybrid-models router."""

from pipeline.models.early_exit import (
    CloudPart,
    EarlyExitConfig,
    EarlyExitResNet,
    EdgeOutput,
    EdgePart,
    FinalExit,
)
from pipeline.models.registry import ModelSpec, available_models, get_model_spec
from pipeline.models.router import (
    GainRouter,
    RouterManifest,
    default_router_path,
    entropy_score,
    load_router,
    max_softmax_score,
    save_router,
)
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
    "GainRouter",
    "ModelSpec",
    "RouterManifest",
    "WeightsManifest",
    "available_models",
    "default_models_dir",
    "default_router_path",
    "entropy_score",
    "get_model_spec",
    "load_early_exit",
    "load_router",
    "max_softmax_score",
    "read_manifest",
    "save_router",
    "save_weights",
]
