"""The learned router of hybrid models (Kag et al., ICLR 2023): keep a frame, or send it?

A tiny network over an early exit's logits that predicts what sending a frame to the
cloud's final exit would do to its answer: lose it (the edge was right, the cloud is
wrong), change nothing (both right or both wrong), or gain it (the edge is wrong, the
cloud right). Its *keep-local score* is ``(1 - expected gain) / 2`` in [0, 1]: the edge
keeps a frame when the score is at least ``edge.confidence_threshold``, like a
max-softmax confidence, so a coverage target (share answered locally) becomes the
matching quantile of the scores, the same way for every policy.

Ranking by the expected gain is what the coverage-constrained hybrid risk asks for:
with the two models fixed, sending a set S costs ``sum over S of -gain(x)`` errors
against keeping everything, so under "at most (1 - coverage) sent" the best S is the
inputs with the largest E[gain | x]; the Lagrange multiplier of the coverage constraint
is the threshold. One ranking serves every coverage. How it is trained:
:mod:`camoffload.training.router`; the numbers: docs/router.md.

The alternatives it is compared with are here too, as keep-local scores over the same
logits: :func:`max_softmax_score` and :func:`entropy_score`.

On disk: ``pipeline/models/shipped/<model>.router.pt`` (float32 state dict, a few KB) beside
``pipeline/models/shipped/<model>.router.json`` (the manifest: the exit it reads, the base model's
version, sha256, command, seed, metrics); :func:`load_router` checks them before torch
reads a byte and says in one line what is wrong (:class:`~pipeline.errors.ModelError`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from pipeline.errors import ModelError
from pipeline.models.weights import default_models_dir, read_json_object, sha256_of

__all__ = [
    "ROUTER_ARCHITECTURE",
    "GainRouter",
    "RouterManifest",
    "RouterScorer",
    "default_router_path",
    "entropy_score",
    "load_router",
    "max_softmax_score",
    "router_features",
    "save_router",
]

ROUTER_ARCHITECTURE = "gain_router"
ROUTER_FORMAT = 1
# The router's three outcome classes: what sending a frame does to its answer.
LOSS, TIE, GAIN = 0, 1, 2


def router_features(logits: torch.Tensor) -> torch.Tensor:
    """N x C exit logits -> N x 2C: log-softmax, then the softmax sorted high to low.

    The log-probabilities say which classes the exit hesitates between (a shirt-or-coat
    doubt is one the cloud often settles; some others it does not); the sorted
    probabilities say how sure the exit is, whatever the class.
    """
    log_probs = torch.log_softmax(logits.float(), dim=1)
    sorted_probs = log_probs.exp().sort(dim=1, descending=True).values
    return torch.cat([log_probs, sorted_probs], dim=1)


class GainRouter(nn.Module):
    """Exit logits -> logits over (sending loses, ties, gains) the frame's answer."""

    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(self, *, num_classes: int, hidden: int = 32) -> None:
        super().__init__()
        if num_classes < 2 or hidden < 1:
            raise ValueError(
                f"a router needs >= 2 classes and >= 1 hidden unit: {num_classes}, {hidden}"
            )
        self.num_classes = num_classes
        self.hidden = hidden
        features = 2 * num_classes
        # Standardisation of the features, fitted on the training set.
        self.register_buffer("feature_mean", torch.zeros(features))
        self.register_buffer("feature_std", torch.ones(features))
        self.body = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def fit_standardisation(self, logits: torch.Tensor) -> None:
        features = router_features(logits)
        self.feature_mean.copy_(features.mean(dim=0))
        self.feature_std.copy_(features.std(dim=0).clamp_min(1e-6))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        features = (router_features(logits) - self.feature_mean) / self.feature_std
        out: torch.Tensor = self.body(features)
        return out

    def keep_score(self, logits: torch.Tensor) -> torch.Tensor:
        """(1 - E[gain]) / 2 per frame, in [0, 1]: 1 = keep, 0 = surely worth sending."""
        probs = torch.softmax(self.forward(logits), dim=1)
        return (1.0 - (probs[:, GAIN] - probs[:, LOSS])) / 2.0

    @property
    def macs(self) -> int:
        """Multiply-accumulates per frame (the two linear layers; features are O(C log C))."""
        features = 2 * self.num_classes
        return features * self.hidden + self.hidden * 3

    def scorer(self) -> RouterScorer:
        """A NumPy copy for one frame at a time (no torch dispatch on the edge's loop)."""
        state = {
            key: value.detach().cpu().numpy().astype(np.float64)
            for key, value in self.state_dict().items()
        }
        return RouterScorer(
            mean=state["feature_mean"],
            std=state["feature_std"],
            w1=state["body.0.weight"],
            b1=state["body.0.bias"],
            w2=state["body.2.weight"],
            b2=state["body.2.bias"],
        )


@dataclass(frozen=True, slots=True, eq=False)
class RouterScorer:
    """:meth:`GainRouter.keep_score` for one frame in NumPy: a few microseconds."""

    mean: npt.NDArray[np.float64]
    std: npt.NDArray[np.float64]
    w1: npt.NDArray[np.float64]
    b1: npt.NDArray[np.float64]
    w2: npt.NDArray[np.float64]
    b2: npt.NDArray[np.float64]

    def __call__(self, logits: npt.ArrayLike) -> float:
        z = np.asarray(logits, dtype=np.float64).reshape(-1)
        if 2 * z.size != self.mean.size:
            raise ModelError(f"the router reads {self.mean.size // 2} logits, got {z.size}")
        z = z - z.max()
        log_probs = z - math.log(float(np.exp(z).sum()))
        probs = np.sort(np.exp(log_probs))[::-1]
        features = (np.concatenate([log_probs, probs]) - self.mean) / self.std
        hidden = np.maximum(self.w1 @ features + self.b1, 0.0)
        out = self.w2 @ hidden + self.b2
        out = np.exp(out - out.max())
        out /= out.sum()
        return float(min(1.0, max(0.0, (1.0 - (out[GAIN] - out[LOSS])) / 2.0)))


def _softmax(logits: npt.ArrayLike) -> npt.NDArray[np.float64]:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    probs: npt.NDArray[np.float64] = e / e.sum(axis=-1, keepdims=True)
    return probs


def max_softmax_score(logits: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The top softmax probability (per row of ``logits``): the seed study's confidence."""
    probs: npt.NDArray[np.float64] = _softmax(logits).max(axis=-1)
    return probs


def entropy_score(logits: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``1 - H(softmax) / log C`` per row, in [0, 1]: 1 = one class certain, 0 = uniform."""
    probs = _softmax(logits)
    classes = probs.shape[-1]
    plogp = np.where(probs > 0, probs * np.log(np.where(probs > 0, probs, 1.0)), 0.0)
    entropy = -plogp.sum(axis=-1)
    score: npt.NDArray[np.float64] = np.clip(1.0 - entropy / math.log(classes), 0.0, 1.0)
    return score


# -- on disk -----------------------------------------------------------------------------


def default_router_path(model: str) -> Path:
    """``pipeline/models/shipped/<model>.router.pt`` (``$CAMOFFLOAD_MODELS_DIR`` when set)."""
    return default_models_dir() / f"{model}.router.pt"


def _manifest_path(weights_path: Path) -> Path:
    return weights_path.with_suffix(".json")


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterManifest:
    """What ``<model>.router.json`` says about ``<model>.router.pt``."""

    model: str  # the early-exit network whose exit it reads
    model_version: str  # that network's version: the router is only valid for it
    split: int  # the exit it reads
    num_classes: int
    hidden: int
    weights_file: str  # relative to the manifest's folder
    sha256: str
    size_bytes: int
    params: int
    macs: int
    seed: int
    epochs: int
    command: str
    torch_version: str
    train_wall_s: float
    train_images: int
    val_images: int
    metrics: dict[str, Any] = field(default_factory=dict)
    architecture: str = ROUTER_ARCHITECTURE
    format: int = ROUTER_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: Path) -> RouterManifest:
        if data.get("format") != ROUTER_FORMAT:
            raise ModelError(
                f"{source}: router manifest format {data.get('format')!r} is not "
                f"{ROUTER_FORMAT}; retrain it with `camoffload train-router`"
            )
        if data.get("architecture") != ROUTER_ARCHITECTURE:
            raise ModelError(
                f"{source}: architecture {data.get('architecture')!r} is not "
                f"{ROUTER_ARCHITECTURE!r}"
            )
        try:
            return cls(
                model=str(data["model"]),
                model_version=str(data["model_version"]),
                split=int(data["split"]),
                num_classes=int(data["num_classes"]),
                hidden=int(data["hidden"]),
                weights_file=str(data["weights_file"]),
                sha256=str(data["sha256"]),
                size_bytes=int(data["size_bytes"]),
                params=int(data["params"]),
                macs=int(data["macs"]),
                seed=int(data["seed"]),
                epochs=int(data["epochs"]),
                command=str(data["command"]),
                torch_version=str(data["torch_version"]),
                train_wall_s=float(data["train_wall_s"]),
                train_images=int(data["train_images"]),
                val_images=int(data["val_images"]),
                metrics=dict(data.get("metrics", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"{source}: router manifest is missing or mangles a field: {exc!r}"
            ) from exc


def _read_router_manifest(path: Path) -> RouterManifest:
    if not path.is_file():
        raise ModelError(
            f"no router manifest at {path}: train one with `camoffload train-router` "
            "or point edge.router at the router's .pt file"
        )
    return RouterManifest.from_dict(read_json_object(path, "router manifest"), source=path)


def load_router(path: str | Path) -> tuple[GainRouter, RouterManifest]:
    """The router at ``path`` (its ``.pt``, or its ``.json``), verified, in eval mode."""
    path = Path(path)
    manifest_path = path if path.suffix == ".json" else _manifest_path(path)
    manifest = _read_router_manifest(manifest_path)
    weights = manifest_path.parent / manifest.weights_file
    if not weights.is_file():
        raise ModelError(f"router weights {weights} named by {manifest_path} are missing")
    if weights.stat().st_size != manifest.size_bytes or sha256_of(weights) != manifest.sha256:
        raise ModelError(
            f"router weights {weights} do not match the sha256 and size in {manifest_path}: "
            "corrupt or replaced; restore it or retrain with `camoffload train-router`"
        )
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError) as exc:
        raise ModelError(f"router weights {weights} cannot be read by torch: {exc}") from exc
    router = GainRouter(num_classes=manifest.num_classes, hidden=manifest.hidden)
    try:
        router.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ModelError(f"router weights {weights} do not fit {manifest_path}: {exc}") from exc
    return router.eval(), manifest


def save_router(
    router: GainRouter, manifest_fields: dict[str, Any], *, path: Path
) -> RouterManifest:
    """Write ``path`` (``<model>.router.pt``) and its manifest beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().float() for key, value in router.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # never a half-written file under the real name
    manifest = RouterManifest(
        num_classes=router.num_classes,
        hidden=router.hidden,
        weights_file=path.name,
        sha256=sha256_of(path),
        size_bytes=path.stat().st_size,
        params=sum(p.numel() for p in router.parameters()),
        macs=router.macs,
        **manifest_fields,
    )
    _manifest_path(path).write_text(manifest.to_json(), encoding="utf-8")
    return manifest
