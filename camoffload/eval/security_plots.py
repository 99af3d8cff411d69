"""The security report's pictures (matplotlib, headless), from the cells of cells.jsonl.

A condition is "data / link"; a marker or bar colour is a strategy. Skipped cells (no
measures) are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI; must precede pyplot

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["render_security_plots"]

Cells = Sequence[dict[str, Any]]
_MARKERS = "osD^vP*Xh<>"


def _condition(cell: dict[str, Any]) -> str:
    return f"{cell['data']} / {cell['link']}"


def accuracy_vs_bytes(cells: Cells, path: Path) -> None:
    """Person F1 and count error against kB per frame. F1 alone saturates on a scene
    with someone in every frame (vtest.avi); the count error still tells strategies apart."""
    conditions = list(dict.fromkeys(_condition(c) for c in cells))
    strategies = list(dict.fromkeys(c["strategy"] for c in cells))
    colours = plt.get_cmap("tab10")
    fig, (f1_ax, count_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    for c in cells:
        ci, si = conditions.index(_condition(c)), strategies.index(c["strategy"])
        style = {"marker": _MARKERS[si % len(_MARKERS)], "color": colours(ci % 10), "s": 60}
        f1_ax.scatter(c["bytes_per_frame"] / 1000, (c["person_f1"] or 0.0) * 100, **style)
        count_ax.scatter(c["bytes_per_frame"] / 1000, c["count_mae"], **style)
    for si, strategy in enumerate(strategies):
        f1_ax.scatter([], [], marker=_MARKERS[si % len(_MARKERS)], color="grey", label=strategy)
    for ci, condition in enumerate(conditions):
        f1_ax.scatter([], [], marker="s", color=colours(ci % 10), label=condition)
    f1_ax.set_ylabel("person-presence F1 vs reference (%)")
    count_ax.set_ylabel("people per frame, mean absolute error vs reference")
    for ax in (f1_ax, count_ax):
        ax.set_xlabel("bytes sent per frame, over all frames (kB)")
        ax.grid(alpha=0.3)
    f1_ax.legend(fontsize="x-small", ncol=2)
    fig.suptitle("Accuracy against bandwidth: marker = strategy, colour = data / link")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency(cells: Cells, path: Path) -> None:
    """p95 as a light bar with p50 drawn darker inside it, per strategy and condition."""
    conditions = list(dict.fromkeys(_condition(c) for c in cells))
    strategies = list(dict.fromkeys(c["strategy"] for c in cells))
    values = {(_condition(c), c["strategy"]): c for c in cells}
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.8 * len(conditions) + 2), 4))
    width = 0.8 / len(strategies)
    x = np.arange(len(conditions))
    for i, strategy in enumerate(strategies):
        cells_of = [values.get((cond, strategy)) for cond in conditions]
        p50 = [np.nan if c is None else c["latency_p50_ms"] or np.nan for c in cells_of]
        p95 = [np.nan if c is None else c["latency_p95_ms"] or np.nan for c in cells_of]
        at = x + i * width - 0.4 + width / 2
        ax.bar(at, p95, width, color=colours(i % 10), alpha=0.35)
        ax.bar(at, p50, width * 0.6, color=colours(i % 10), label=strategy)
    ax.set_xticks(x, conditions, rotation=15, ha="right")
    ax.set_ylabel("capture to decision (ms)")
    ax.set_title("Latency per strategy: dark bar p50, light bar p95 (all frames)")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PLOTS = (
    (
        "accuracy_vs_bytes.png",
        "Person F1 and count error against bytes per frame",
        accuracy_vs_bytes,
    ),
    ("latency.png", "Latency p50 and p95 per strategy", latency),
)


def render_security_plots(cells: Cells, folder: Path) -> list[tuple[str, str]]:
    """Every plot of the measured cells into ``folder``: (file name, caption) pairs."""
    measured = [c for c in cells if "skipped" not in c]
    if not measured:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, caption, draw in PLOTS:
        draw(measured, folder / name)
        out.append((name, caption))
    return out
