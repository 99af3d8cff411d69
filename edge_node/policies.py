"""Per-frame offloading policies: answer locally, or ask the cloud.

A policy sees the local model's answer (``None`` when the edge has no model) and says
where the frame goes. Back-pressure and the link are not its business: the node may
still keep an ``offload`` frame local when workers are busy or the broker is away.
The smarter policies (learned router, partition, Gompertz quality) plug in here too.

The threshold-like policies share one rule: a per-frame *keep-local score* in [0, 1]
(:meth:`ScoredPolicy.keep_score`), offload below ``edge.confidence_threshold``. So a
coverage target (share answered locally) is the same quantile of each policy's own
scores (the eval harness resolves ``coverage`` that way):

* ``threshold``: the local exit's max-softmax probability;
* ``entropy``: ``1 - H(softmax) / log C`` of the exit's logits;
* ``router``: the learned router of hybrid models (docs/router.md), ``(1 - expected
  gain of sending) / 2``, read from ``edge.router``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from edge_node.local_model import LocalOutput
from pipeline.config import EdgeConfig
from pipeline.errors import ConfigError, ModelError
from pipeline.models.router import (
    RouterScorer,
    default_router_path,
    entropy_score,
    load_router,
)
from pipeline.models.weights import read_manifest

__all__ = [
    "CloudOnly",
    "ConfidenceThreshold",
    "EntropyThreshold",
    "LocalOnly",
    "OffloadPolicy",
    "Route",
    "RouterPolicy",
    "ScoredPolicy",
    "make_policy",
    "policy_from_config",
]


class Route(enum.Enum):
    LOCAL = "local"
    OFFLOAD = "offload"


class OffloadPolicy(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def needs_local_model(self) -> bool: ...

    def route(self, local: LocalOutput | None) -> Route: ...


@runtime_checkable
class ScoredPolicy(OffloadPolicy, Protocol):
    """A policy that keeps a frame when its keep-local score reaches ``threshold``."""

    @property
    def threshold(self) -> float: ...

    def keep_score(self, local: LocalOutput) -> float: ...


def _check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(
            f"confidence threshold must be 0-1, got {threshold}",
            key="edge.confidence_threshold",
        )


def _logits(local: LocalOutput, policy: str) -> np.ndarray:
    if local.logits is None:
        raise ModelError(
            f"policy {policy!r} reads the local exit's logits: use an early-exit local "
            "model (e.g. fmnist_exit_resnet)"
        )
    return local.logits


@dataclass(frozen=True, slots=True)
class LocalOnly:
    """Never offload: the edge's model answers every frame."""

    name: str = "local-only"
    needs_local_model: bool = True

    def route(self, local: LocalOutput | None) -> Route:
        return Route.LOCAL


@dataclass(frozen=True, slots=True)
class CloudOnly:
    """Offload every frame; the local answer (if any) is only the fallback."""

    name: str = "cloud-only"
    needs_local_model: bool = False

    def route(self, local: LocalOutput | None) -> Route:
        return Route.OFFLOAD


@dataclass(frozen=True, slots=True)
class ConfidenceThreshold:
    """Offload when the local exit's max-softmax confidence is below ``threshold``.

    The seed study's early-exit rule. Our models are trained with label smoothing and
    distillation, so their confidences rarely pass 0.95: calibrate the threshold on
    held-out data (docs/models.md gives the accuracy-vs-coverage table) rather than
    assume 0.99 means anything.
    """

    threshold: float
    name: str = "threshold"
    needs_local_model: bool = True

    def __post_init__(self) -> None:
        _check_threshold(self.threshold)

    def keep_score(self, local: LocalOutput) -> float:
        return local.confidence

    def route(self, local: LocalOutput | None) -> Route:
        if local is None or self.keep_score(local) < self.threshold:
            return Route.OFFLOAD
        return Route.LOCAL


@dataclass(frozen=True, slots=True)
class EntropyThreshold:
    """Offload when ``1 - H(softmax) / log C`` of the local exit is below ``threshold``.

    The baseline Kag et al. compare their router with; it needs the exit's logits, so an
    early-exit local model.
    """

    threshold: float
    name: str = "entropy"
    needs_local_model: bool = True

    def __post_init__(self) -> None:
        _check_threshold(self.threshold)

    def keep_score(self, local: LocalOutput) -> float:
        return float(entropy_score(_logits(local, self.name)))

    def route(self, local: LocalOutput | None) -> Route:
        if local is None or self.keep_score(local) < self.threshold:
            return Route.OFFLOAD
        return Route.LOCAL


@dataclass(frozen=True, slots=True)
class RouterPolicy:
    """Offload when the learned router's keep-local score is below ``threshold``.

    The router (hybrid models, docs/router.md) reads the local exit's logits and
    estimates what sending the frame would gain; its score is ``(1 - gain) / 2``. It
    runs in NumPy, a few microseconds per frame, on the event loop.
    """

    threshold: float
    scorer: RouterScorer = field(repr=False)
    source: str = ""  # the router file, for messages
    name: str = "router"
    needs_local_model: bool = True

    def __post_init__(self) -> None:
        _check_threshold(self.threshold)

    @classmethod
    def load(
        cls,
        path: str | Path,
        threshold: float,
        *,
        local_model: str | None = None,
        split: int | None = None,
    ) -> RouterPolicy:
        """The router at ``path``, checked against the local model and exit it reads.

        A missing, corrupt or foreign router is a :class:`ModelError` here, at start.
        """
        router, manifest = load_router(path)
        if local_model is not None:
            if manifest.model != local_model:
                raise ModelError(
                    f"router {path} reads {manifest.model}, but edge.local_model is "
                    f"{local_model!r}: `camoffload train-router --model {local_model}`"
                )
            version = read_manifest(local_model).version
            if manifest.model_version != version:
                raise ModelError(
                    f"router {path} was trained on {manifest.model_version}, the local model "
                    f"is {version}: retrain it with `camoffload train-router`"
                )
        if split is not None and manifest.split != split:
            raise ModelError(
                f"router {path} reads exit {manifest.split}, but edge.split is {split}"
            )
        return cls(threshold, router.scorer(), source=str(path))

    def keep_score(self, local: LocalOutput) -> float:
        return self.scorer(_logits(local, self.name))

    def route(self, local: LocalOutput | None) -> Route:
        if local is None or self.keep_score(local) < self.threshold:
            return Route.OFFLOAD
        return Route.LOCAL


def make_policy(
    name: str,
    *,
    confidence_threshold: float,
    router: str | Path | None = None,
    local_model: str | None = None,
    split: int | None = None,
) -> OffloadPolicy:
    """The policy called ``name``; ``router`` (a .pt) is needed for ``"router"`` only."""
    if name == "local-only":
        return LocalOnly()
    if name == "cloud-only":
        return CloudOnly()
    if name == "threshold":
        return ConfidenceThreshold(confidence_threshold)
    if name == "entropy":
        return EntropyThreshold(confidence_threshold)
    if name == "router":
        if router is None:
            if local_model is None:
                raise ConfigError(
                    "policy 'router' needs edge.router or edge.local_model", key="edge.router"
                )
            router = default_router_path(local_model)
        return RouterPolicy.load(router, confidence_threshold, local_model=local_model, split=split)
    raise ConfigError(
        f"unknown policy {name!r}: local-only, cloud-only, threshold, entropy or router",
        key="edge.policy",
    )


def policy_from_config(cfg: EdgeConfig) -> OffloadPolicy:
    """``edge.policy`` with its settings (the router from ``edge.router``, by default
    ``pipeline/models/shipped/<local_model>.router.pt``)."""
    return make_policy(
        cfg.policy,
        confidence_threshold=cfg.confidence_threshold,
        router=cfg.router,
        local_model=cfg.local_model,
        split=cfg.split,
    )
