"""Training the hybrid-models router (``camoffload train-router``), and re-exporting
what scoring it needs.

Labels come from the training split only (the test split is what docs/results.md
scores): the early-exit network's outputs on it, and from them the outcome of sending
each image (:mod:`camoffload.training.exit_outputs`). The router is a 3-way classifier
over those outcomes (loss, tie, gain), trained with cross-entropy; its keep-local score
is ``(1 - (P(GAIN) - P(LOSS))) / 2``. The coverage constraint of Kag et al. is met at
inference, by the threshold: the edge keeps the ``coverage`` share of frames with the
highest score (see :mod:`pipeline.models.router` for why that ranking is the
constrained optimum). A tenth of the training split is held out to report validation
accuracy at 90/80/70% coverage (:mod:`camoffload.training.coverage`) and the score
thresholds that reach them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention

from camoffload.training.coverage import (
    COVERAGES,
    accuracy_at_coverage,
    coverage_metrics,
    coverage_threshold,
    policy_scores,
)
from camoffload.training.exit_outputs import (
    DEFAULT_CACHE,
    ExitOutputs,
    cached_exit_outputs,
    compute_exit_outputs,
    outcomes,
)
from pipeline.errors import ModelError
from pipeline.models.router import (
    GAIN,
    LOSS,
    TIE,
    GainRouter,
    RouterManifest,
    default_router_path,
    load_router,
    save_router,
)

# The labelling and the coverage scores are re-exported: the router's callers (the
# command, the bench, the tests) import everything about it from here.
__all__ = [
    "COVERAGES",
    "DEFAULT_CACHE",
    "ExitOutputs",
    "RouterOptions",
    "accuracy_at_coverage",
    "cached_exit_outputs",
    "compute_exit_outputs",
    "coverage_threshold",
    "describe",
    "fit_router",
    "outcomes",
    "policy_scores",
    "train_router",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterOptions:
    model: str = "fmnist_exit_resnet"
    split: int = 1
    seed: int = 0
    epochs: int = 30
    hidden: int = 32
    batch_size: int = 512
    lr: float = 3e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    out: Path | None = None  # default: pipeline/models/shipped/<model>.router.pt
    cache_dir: Path | None = DEFAULT_CACHE
    models_dir: Path | None = None
    command: str = "camoffload train-router"


def fit_router(
    exit_logits: npt.NDArray[np.float32],
    targets: npt.NDArray[np.int64],
    *,
    hidden: int,
    epochs: int,
    seed: int,
    batch_size: int = 512,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
) -> GainRouter:
    """A :class:`GainRouter` fitted to outcome ``targets`` (0/1/2); seeded and repeatable."""
    torch.manual_seed(seed)
    logits = torch.from_numpy(np.ascontiguousarray(exit_logits, dtype=np.float32))
    target = torch.from_numpy(np.asarray(targets, dtype=np.int64))
    router = GainRouter(num_classes=logits.shape[1], hidden=hidden)
    router.fit_standardisation(logits)
    optimiser = torch.optim.AdamW(router.parameters(), lr=lr, weight_decay=weight_decay)
    order = torch.Generator().manual_seed(seed)
    router.train()
    for _ in range(epochs):
        for batch in torch.split(torch.randperm(len(target), generator=order), batch_size):
            loss = F.cross_entropy(router(logits[batch]), target[batch])
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
    return router.eval()


def train_router(
    options: RouterOptions, *, log: Callable[[str], None] = logger.info
) -> RouterManifest:
    """Label the training split, fit the router, save it with its manifest, reload it."""
    started = time.monotonic()
    outputs, base = cached_exit_outputs(
        options.model,
        options.split,
        "train",
        cache_dir=options.cache_dir,
        models_dir=options.models_dir,
    )
    log(f"{options.model} exit {options.split}: outputs on {len(outputs)} training images ready")
    permutation = np.random.default_rng(options.seed).permutation(len(outputs))
    held = round(options.val_fraction * len(outputs))
    val, train = outputs.take(permutation[:held]), outputs.take(permutation[held:])
    targets = outcomes(train)
    shares = np.bincount(targets, minlength=3) / len(targets)
    log(
        f"outcomes of sending (train): loss {shares[LOSS]:.2%}, tie {shares[TIE]:.2%}, "
        f"gain {shares[GAIN]:.2%}"
    )
    fit_started = time.monotonic()
    router = fit_router(
        train.exit_logits,
        targets,
        hidden=options.hidden,
        epochs=options.epochs,
        seed=options.seed,
        batch_size=options.batch_size,
        lr=options.lr,
        weight_decay=options.weight_decay,
    )
    fit_s = time.monotonic() - fit_started
    metrics: dict[str, object] = {"validation": coverage_metrics(policy_scores(val, router), val)}
    with torch.inference_mode():
        val_scores = router.keep_score(torch.from_numpy(val.exit_logits)).double().numpy()
    metrics["thresholds"] = {
        f"{c:.2f}": round(coverage_threshold(val_scores, c), 6) for c in COVERAGES
    }
    metrics["fit_s"] = round(fit_s, 1)
    path = options.out or default_router_path(options.model)
    manifest = save_router(
        router,
        {
            "model": options.model,
            "model_version": base.version,
            "split": options.split,
            "seed": options.seed,
            "epochs": options.epochs,
            "command": options.command,
            "torch_version": torch.__version__,
            "train_wall_s": round(time.monotonic() - started, 1),
            "train_images": len(train),
            "val_images": len(val),
            "metrics": metrics,
        },
        path=path,
    )
    reloaded, _ = load_router(path)
    with torch.inference_mode():
        again = reloaded.keep_score(torch.from_numpy(val.exit_logits)).double().numpy()
    if not np.allclose(again, val_scores, atol=1e-6):
        raise ModelError(f"{path}: the router as reloaded scores differently from the one trained")
    return manifest


def describe(manifest: RouterManifest, coverages: Sequence[float] = COVERAGES) -> list[str]:
    """Lines that summarise a trained router's validation metrics."""
    validation = manifest.metrics.get("validation", {})
    lines = [
        f"router for {manifest.model_version} exit {manifest.split}: "
        f"{manifest.params} parameters, {manifest.macs} MACs per frame"
    ]
    for name in ("max-softmax", "entropy", "router", "oracle"):
        row = validation.get(name, {})
        cells = "  ".join(f"{c:.0%}: {row.get(f'{c:.2f}', float('nan')):.2%}" for c in coverages)
        lines.append(f"  validation {name:<12} {cells}")
    return lines
