"""The report's pictures (matplotlib, headless): one function per plot, PNG out.

Each takes the cells (dicts from cells.jsonl) and, for the CDFs, the per-frame rows.
A condition is "load / link" (with the data set's name when a suite has several).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI; must precede pyplot

import matplotlib.pyplot as plt
import numpy as np

from camoffload.eval.analysis import condition_of

__all__ = ["PLOTS", "render_plots"]

Cells = Sequence[dict[str, Any]]
_MARKERS = "osD^vP*Xh<>"


def _conditions(cells: Cells) -> tuple[list[str], list[str], bool]:
    with_data = len({c["data"] for c in cells}) > 1
    conditions = list(dict.fromkeys(condition_of(c, with_data=with_data) for c in cells))
    strategies = list(dict.fromkeys(c["strategy"] for c in cells))
    return conditions, strategies, with_data


def _grouped_bars(
    cells: Cells, key: str, ylabel: str, title: str, path: Path, *, percent: bool
) -> None:
    conditions, strategies, with_data = _conditions(cells)
    values = {(condition_of(c, with_data=with_data), c["strategy"]): c[key] for c in cells}
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(conditions) + 2), 4))
    width = 0.8 / len(strategies)
    x = np.arange(len(conditions))
    for i, strategy in enumerate(strategies):
        heights = [values.get((cond, strategy), np.nan) for cond in conditions]
        scale = 100.0 if percent else 1.0
        ax.bar(x + i * width - 0.4 + width / 2, np.array(heights) * scale, width, label=strategy)
    ax.set_xticks(x, conditions, rotation=15, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def accuracy_vs_latency(cells: Cells, frames: Sequence[dict[str, Any]], path: Path) -> None:
    conditions, strategies, with_data = _conditions(cells)
    colors = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for c in cells:
        ci = conditions.index(condition_of(c, with_data=with_data))
        si = strategies.index(c["strategy"])
        ax.scatter(
            max(c["latency_p50_ms"], 0.1),
            c["accuracy"] * 100,
            marker=_MARKERS[si % len(_MARKERS)],
            color=colors(ci % 10),
            s=60,
        )
    for si, strategy in enumerate(strategies):
        ax.scatter([], [], marker=_MARKERS[si % len(_MARKERS)], color="grey", label=strategy)
    for ci, condition in enumerate(conditions):
        ax.scatter([], [], marker="s", color=colors(ci % 10), label=condition)
    ax.set_xscale("log")
    ax.set_xlabel("median latency, capture to decision (ms, log)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy against latency: marker = strategy, colour = condition")
    ax.legend(fontsize="x-small", ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def timely_accuracy(cells: Cells, frames: Sequence[dict[str, Any]], path: Path) -> None:
    _grouped_bars(
        cells, "timely_accuracy", "correct within the objective (%)",
        "Timely accuracy per condition", path, percent=True,
    )  # fmt: skip


def bytes_sent(cells: Cells, frames: Sequence[dict[str, Any]], path: Path) -> None:
    _grouped_bars(
        cells, "bytes_per_frame", "bytes sent per captured frame",
        "Uplink traffic per frame", path, percent=False,
    )  # fmt: skip


def offload_share(cells: Cells, frames: Sequence[dict[str, Any]], path: Path) -> None:
    _grouped_bars(
        cells, "offload_share", "frames offloaded (%)", "Offload share", path, percent=True
    )


def latency_cdf(cells: Cells, frames: Sequence[dict[str, Any]], path: Path) -> None:
    conditions, _, with_data = _conditions(cells)
    by_cell: dict[str, list[float]] = {}
    for row in frames:
        by_cell.setdefault(row["cell"], []).append(row["latency_ms"])
    cols = min(3, len(conditions))
    rows = (len(conditions) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for i, condition in enumerate(conditions):
        ax = axes[i // cols][i % cols]
        for c in cells:
            if condition_of(c, with_data=with_data) != condition:
                continue
            key = f"{c['data']}/{c['load']}/{c['link']}/{c['strategy']}"
            values = np.sort(np.array(by_cell.get(key, [])))
            if values.size == 0:
                continue
            ax.plot(
                np.maximum(values, 0.1),
                np.arange(1, values.size + 1) / values.size,
                label=c["strategy"],
            )
        ax.set_xscale("log")
        ax.set_title(condition, fontsize="small")
        ax.set_xlabel("latency (ms, log)", fontsize="small")
        ax.set_ylabel("share of frames", fontsize="small")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    for j in range(len(conditions), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle("Latency CDF per condition")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def accuracy_vs_coverage(cells: Cells, frames: Sequence[dict[str, Any]], path: Path) -> None:
    conditions, _, with_data = _conditions(cells)
    fig, ax = plt.subplots(figsize=(6, 4))
    for condition in conditions:
        points = sorted(
            (c["local_share"] * 100, c["accuracy"] * 100)
            for c in cells
            if condition_of(c, with_data=with_data) == condition
        )
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=condition)
    ax.set_xlabel("answered locally (coverage, %)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy against coverage")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# name -> (function, caption); every suite gets the first five, coverage where it fits.
PLOTS = {
    "accuracy_vs_latency": (accuracy_vs_latency, "Accuracy against median latency"),
    "timely_accuracy": (timely_accuracy, "Timely accuracy (correct within the objective)"),
    "latency_cdf": (latency_cdf, "Latency CDFs"),
    "bytes_per_frame": (bytes_sent, "Bytes sent per frame"),
    "offload_share": (offload_share, "Offload share"),
    "accuracy_vs_coverage": (accuracy_vs_coverage, "Accuracy against coverage"),
}


def render_plots(
    cells: Cells, frames: Sequence[dict[str, Any]], folder: Path, *, coverage: bool
) -> list[tuple[str, str]]:
    """Write the plots into ``folder``; returns (file name, caption) pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for name, (draw, caption) in PLOTS.items():
        if name == "accuracy_vs_coverage" and not coverage:
            continue
        draw(cells, frames, folder / f"{name}.png")
        made.append((f"{name}.png", caption))
    return made
