"""Per-frame offloading policies: answer locally, or ask the cloud.

A policy sees the local model's answer (``None`` when the edge has no model) and says
where the frame goes. Back-pressure and the link are not its business: the node may
still keep an ``offload`` frame local when workers are busy or the broker is away.
The smarter policies (learned router, partition, Gompertz quality) plug in here too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from edge_node.local_model import LocalOutput
from pipeline.errors import ConfigError

__all__ = [
    "CloudOnly",
    "ConfidenceThreshold",
    "LocalOnly",
    "OffloadPolicy",
    "Route",
    "make_policy",
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
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(
                f"confidence threshold must be 0-1, got {self.threshold}",
                key="edge.confidence_threshold",
            )

    def route(self, local: LocalOutput | None) -> Route:
        if local is None or local.confidence < self.threshold:
            return Route.OFFLOAD
        return Route.LOCAL


def make_policy(name: str, *, confidence_threshold: float) -> OffloadPolicy:
    if name == "local-only":
        return LocalOnly()
    if name == "cloud-only":
        return CloudOnly()
    if name == "threshold":
        return ConfidenceThreshold(confidence_threshold)
    raise ConfigError(
        f"unknown policy {name!r}: local-only, cloud-only or threshold", key="edge.policy"
    )
