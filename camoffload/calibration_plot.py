"""The calibration's plot: measured points, the fitted curve, and the per-bin curves
(``camoffload calibrate --plot``). Matplotlib is imported only when a plot is drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.calibration import Calibration

__all__ = ["plot_calibration"]


def plot_calibration(calibration: Calibration, path: Path) -> Path:
    """Points (fitting and held-out halves), the fitted curve, and the per-bin curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    front = calibration.frontier
    xmax = max(p.x for p in calibration.points) * 1.05
    grid = np.linspace(0, xmax, 200)
    others = [p for p in calibration.points if not p.frontier]
    left.scatter([p.x for p in front], [p.accuracy for p in front], label="fit half", s=22)
    left.scatter(
        [p.x for p in front],
        [p.accuracy_heldout for p in front],
        marker="x",
        label="held-out half",
        s=28,
    )
    if others:
        left.scatter(
            [p.x for p in others],
            [p.accuracy for p in others],
            marker=".",
            color="grey",
            label="off the frontier",
        )
    c = calibration.curve
    left.plot(
        grid,
        c.curve.evaluate(grid),
        color="black",
        label=f"a={c.curve.a:.3f} b={c.curve.b:.2f} c={c.curve.c:.2f}  "
        f"R²(held-out)={c.r2_heldout:.3f}",
    )
    left.set_xlabel(f"x = bytes / full JPEG q{calibration.reference_quality} bytes")
    left.set_ylabel("cloud accuracy")
    left.set_title(f"{calibration.model}, {calibration.codec}, {calibration.dataset}", fontsize=9)
    left.legend(fontsize=7, loc="lower right")
    for b in calibration.bins:
        line = right.plot(
            grid, b.curve.curve.evaluate(grid), label=f"conf {b.low:.2f}-{b.high:.2f}"
        )
        right.axhline(b.local_accuracy, color=line[0].get_color(), linestyle=":", linewidth=1)
    right.set_xlabel("x")
    right.set_ylabel("cloud accuracy (dotted: local exit)")
    right.set_title("per local-confidence bin", fontsize=9)
    if calibration.bins:
        right.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
