"""Scoring routing policies at a coverage: the share of frames answered locally.

A policy gives each frame a keep-local score; at coverage ``c`` the highest-scoring
``c`` of the frames stay on the edge and the rest get the cloud's answer. The paper's
operating points are :data:`COVERAGES`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from camoffload.training.exit_outputs import ExitOutputs, outcomes
from pipeline.models.router import GAIN, GainRouter, entropy_score, max_softmax_score

__all__ = [
    "COVERAGES",
    "accuracy_at_coverage",
    "coverage_metrics",
    "coverage_threshold",
    "policy_scores",
]

COVERAGES = (0.9, 0.8, 0.7)  # the paper's operating points (share answered locally)


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


def coverage_metrics(
    scores: dict[str, npt.NDArray[np.float64]], outputs: ExitOutputs
) -> dict[str, object]:
    """Edge and cloud accuracy, and each policy's hybrid accuracy at every coverage of
    :data:`COVERAGES`: what a router's manifest keeps as ``validation``."""
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
