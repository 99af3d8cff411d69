"""Training the hybrid-models router, and scoring routing policies at a coverage.

Labels come from the training split only (the test split is what docs/results.md
scores). For every training image the early-exit network runs once: exit ``split``'s
logits (what the router reads on the edge) and the final exit's answer (what the cloud
would say). The outcome of sending that image is then known:

* ``LOSS`` (0): the edge is right and the cloud wrong;
* ``TIE``  (1): both right, or both wrong;
* ``GAIN`` (2): the edge is wrong and the cloud right (the paper's "hard example the
  cloud can classify").

The router is a 3-way classifier over those outcomes (cross-entropy); its keep-local
score is ``(1 - (P(GAIN) - P(LOSS))) / 2``. The coverage constraint of Kag et al. is
met at inference, by the threshold: the edge keeps the ``coverage`` share of frames
with the highest score (see :mod:`pipeline.models.router` for why that ranking is the
constrained optimum). A tenth of the training split is held out to report
validation accuracy at 90/80/70% coverage and the score thresholds that reach them.

The network's outputs on a split are cached (``~/.cache/camoffload/router/``, keyed by
the weights' sha256), so retraining the router takes seconds.
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

from camoffload.training.evaluate import normalised_batch
from pipeline.datasets import Split, get_dataset
from pipeline.errors import ModelError
from pipeline.models.early_exit import EarlyExitResNet
from pipeline.models.router import (
    GAIN,
    LOSS,
    TIE,
    GainRouter,
    RouterManifest,
    default_router_path,
    entropy_score,
    load_router,
    max_softmax_score,
    save_router,
)
from pipeline.models.weights import WeightsManifest, load_early_exit

__all__ = [
    "COVERAGES",
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

COVERAGES = (0.9, 0.8, 0.7)  # the paper's operating points (share answered locally)
DEFAULT_CACHE = Path("~/.cache/camoffload/router")
_BATCH = 500


@dataclass(frozen=True, slots=True)
class ExitOutputs:
    """An early-exit network's outputs on a labelled set: one row per image."""

    exit_logits: npt.NDArray[np.float32]  # N x C, the edge's exit
    final_logits: npt.NDArray[np.float32]  # N x C, the cloud's final exit
    labels: npt.NDArray[np.int64]  # N

    def __post_init__(self) -> None:
        if not len(self.exit_logits) == len(self.final_logits) == len(self.labels):
            raise ValueError("exit logits, final logits and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def edge_right(self) -> npt.NDArray[np.bool_]:
        right: npt.NDArray[np.bool_] = self.exit_logits.argmax(axis=1) == self.labels
        return right

    @property
    def cloud_right(self) -> npt.NDArray[np.bool_]:
        right: npt.NDArray[np.bool_] = self.final_logits.argmax(axis=1) == self.labels
        return right

    def take(self, index: npt.NDArray[np.int64]) -> ExitOutputs:
        return ExitOutputs(self.exit_logits[index], self.final_logits[index], self.labels[index])


def compute_exit_outputs(
    network: EarlyExitResNet,
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int64],
    *,
    split: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> ExitOutputs:
    """Exit ``split``'s and the final exit's logits for every image (N x H x W x C)."""
    network.check_split(split)
    if split < 1:
        raise ModelError("the router reads an exit: split must be >= 1")
    edge, cloud = network.edge_part(split).eval(), network.cloud_part(split).eval()
    exit_rows, final_rows = [], []
    with torch.inference_mode():
        for start in range(0, len(images), _BATCH):
            batch = normalised_batch(images[start : start + _BATCH], mean, std)
            out = edge(batch)
            assert out.logits is not None  # split >= 1
            exit_rows.append(out.logits.float().numpy())
            final_rows.append(cloud(out.activation).float().numpy())
    return ExitOutputs(
        np.concatenate(exit_rows).astype(np.float32),
        np.concatenate(final_rows).astype(np.float32),
        np.asarray(labels, dtype=np.int64),
    )


def cached_exit_outputs(
    model: str,
    split: int,
    data_split: Split,
    *,
    cache_dir: Path | None = DEFAULT_CACHE,
    models_dir: Path | None = None,
) -> tuple[ExitOutputs, WeightsManifest]:
    """:func:`compute_exit_outputs` on a data set's split, cached by the weights' sha256."""
    network, manifest = load_early_exit(model, models_dir=models_dir)
    cache = None
    if cache_dir is not None:
        cache = cache_dir.expanduser() / f"{manifest.version}-exit{split}-{data_split}.npz"
        if cache.is_file():
            with np.load(cache) as stored:
                return ExitOutputs(stored["exit"], stored["final"], stored["labels"]), manifest
    data = get_dataset(manifest.dataset).load(
        get_dataset(manifest.dataset).default_root, data_split
    )
    started = time.monotonic()
    outputs = compute_exit_outputs(
        network, data.images, data.labels, split=split, mean=manifest.mean, std=manifest.std
    )
    logger.info(
        "%s: exit %d and final outputs on %d %s images in %.0f s",
        model,
        split,
        len(outputs),
        data_split,
        time.monotonic() - started,
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, exit=outputs.exit_logits, final=outputs.final_logits, labels=outputs.labels)
        tmp.replace(cache)
    return outputs, manifest


def outcomes(outputs: ExitOutputs) -> npt.NDArray[np.int64]:
    """What sending each image does: ``LOSS`` (0), ``TIE`` (1) or ``GAIN`` (2)."""
    edge, cloud = outputs.edge_right, outputs.cloud_right
    result = np.full(len(outputs), TIE, dtype=np.int64)
    result[edge & ~cloud] = LOSS
    result[~edge & cloud] = GAIN
    return result


# -- scoring policies at a coverage ------------------------------------------------------


def coverage_threshold(keep_scores: npt.ArrayLike, coverage: float) -> float:
    """The threshold that keeps ``coverage`` of these frames local (offload below it).

    The (1 - coverage) quantile, as the eval harness resolves a suite's ``coverage``:
    the frames scoring at least this are kept.
    """
    if not 0.0 <= coverage <= 1.0:
        raise ValueError(f"coverage must be 0-1, got {coverage}")
    return float(np.quantile(np.asarray(keep_scores, dtype=np.float64), 1.0 - coverage))


def accuracy_at_coverage(
    keep_scores: npt.ArrayLike,
    edge_right: npt.NDArray[np.bool_],
    cloud_right: npt.NDArray[np.bool_],
    coverage: float,
) -> float:
    """Hybrid accuracy when exactly round(coverage * N) frames, the highest-scoring, stay
    local (ties by order) and the rest get the cloud's answer."""
    scores = np.asarray(keep_scores, dtype=np.float64)
    kept = round(coverage * len(scores))
    order = np.argsort(-scores, kind="stable")
    keep = np.zeros(len(scores), dtype=bool)
    keep[order[:kept]] = True
    return float(np.mean(np.where(keep, edge_right, cloud_right)))


def policy_scores(
    outputs: ExitOutputs, router: GainRouter | None = None
) -> dict[str, npt.NDArray[np.float64]]:
    """Keep-local scores of every policy on ``outputs``; ``oracle`` knows the outcomes."""
    scores = {
        "max-softmax": max_softmax_score(outputs.exit_logits),
        "entropy": entropy_score(outputs.exit_logits),
    }
    if router is not None:
        with torch.inference_mode():
            scores["router"] = (
                router.keep_score(torch.from_numpy(outputs.exit_logits)).double().numpy()
            )
    # The best possible ranking: gains first to the cloud, losses last.
    scores["oracle"] = (GAIN - outcomes(outputs)).astype(np.float64)
    return scores


def _coverage_metrics(
    scores: dict[str, npt.NDArray[np.float64]], outputs: ExitOutputs
) -> dict[str, object]:
    edge, cloud = outputs.edge_right, outputs.cloud_right
    metrics: dict[str, object] = {
        "edge_accuracy": round(float(edge.mean()), 5),
        "cloud_accuracy": round(float(cloud.mean()), 5),
    }
    for name, values in scores.items():
        metrics[name] = {
            f"{c:.2f}": round(accuracy_at_coverage(values, edge, cloud, c), 5) for c in COVERAGES
        }
    return metrics


# -- training ----------------------------------------------------------------------------


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
    metrics: dict[str, object] = {"validation": _coverage_metrics(policy_scores(val, router), val)}
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
