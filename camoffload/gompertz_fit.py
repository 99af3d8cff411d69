"""Fitting a Gompertz curve to measured (x, accuracy) points: ``camoffload calibrate``.

:func:`fit_gompertz` fits :class:`pipeline.gompertz.GompertzCurve`'s three numbers by
bounded least squares from several starting values and reports R^2 and the residuals.
It needs SciPy (the ``eval`` extra), imported only inside :func:`fit_gompertz`. The
curve itself, which the edge evaluates at run time, is :mod:`pipeline.gompertz`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.gompertz import A_BOUNDS, B_BOUNDS, C_BOUNDS, GompertzCurve

__all__ = ["GompertzFit", "fit_gompertz", "r_squared"]

_C_STARTS = (0.5, 2.0, 8.0, 30.0, 120.0)


def r_squared(observed: Sequence[float], predicted: Sequence[float]) -> float:
    """Coefficient of determination; 1.0 for a perfect fit, may be negative."""
    y = np.asarray(observed, dtype=np.float64)
    f = np.asarray(predicted, dtype=np.float64)
    if y.shape != f.shape or y.size == 0:
        raise ValueError("r_squared needs two equal, non-empty sequences")
    ss_res = float(np.sum((y - f) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


@dataclass(frozen=True, slots=True)
class GompertzFit:
    """A fitted curve and how well it fits the points it was fitted to."""

    curve: GompertzCurve
    r2: float
    residuals: tuple[float, ...]  # observed - fitted, in the order of the points
    rmse: float


def _starts(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> list[list[float]]:
    """Starting values: a just above the best accuracy, and for several c the b that
    puts the curve through the point with the least data."""
    a0 = min(A_BOUNDS[1], max(float(y.max()) * 1.01, 1e-3))
    low = int(np.argmin(x))
    ratio = min(max(float(y[low]) / a0, 1e-6), 0.999)
    starts = []
    for c0 in _C_STARTS:
        b0 = -math.log(ratio) * math.exp(min(c0 * float(x[low]), 50.0))
        starts.append([a0, min(max(b0, B_BOUNDS[0] * 10), B_BOUNDS[1] / 10), c0])
    return starts


def fit_gompertz(
    x: Sequence[float], accuracy: Sequence[float], *, weights: Sequence[float] | None = None
) -> GompertzFit:
    """Least-squares Gompertz fit of ``accuracy`` (0-1) against ``x`` (>= 0).

    Bounded (``a`` <= 1, b and c positive), started from several values of ``c``; the
    best of the converged fits wins. ``weights`` (e.g. images per point) weigh the
    squared residuals. Raises ``ValueError`` with fewer than 3 points or bad values.
    """
    from scipy.optimize import least_squares  # the eval extra; the edge never fits

    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(accuracy, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1 or xs.size < 3:
        raise ValueError("a Gompertz fit needs at least 3 (x, accuracy) points")
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        raise ValueError("x and accuracy must be finite")
    if (xs < 0).any() or (ys < 0).any() or (ys > 1).any():
        raise ValueError("x must be >= 0 and accuracy within 0..1")
    w = np.ones_like(xs) if weights is None else np.sqrt(np.asarray(weights, dtype=np.float64))
    if w.shape != xs.shape or (w < 0).any():
        raise ValueError("weights must be one non-negative number per point")

    def residuals(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        a, b, c = p
        return np.asarray(w * (a * np.exp(-b * np.exp(-c * xs)) - ys), dtype=np.float64)

    lower = [A_BOUNDS[0], B_BOUNDS[0], C_BOUNDS[0]]
    upper = [A_BOUNDS[1], B_BOUNDS[1], C_BOUNDS[1]]
    best: tuple[float, npt.NDArray[np.float64]] | None = None
    for start in _starts(xs, ys):
        result = least_squares(residuals, start, bounds=(lower, upper), method="trf")
        cost = float(np.sum(result.fun**2))
        if np.isfinite(cost) and (best is None or cost < best[0]):
            best = (cost, np.asarray(result.x, dtype=np.float64))
    if best is None:  # pragma: no cover - least_squares returns finite costs in bounds
        raise ValueError("the Gompertz fit did not converge from any start")
    a, b, c = (float(v) for v in best[1])
    curve = GompertzCurve(
        min(max(a, A_BOUNDS[0]), A_BOUNDS[1]),
        min(max(b, B_BOUNDS[0]), B_BOUNDS[1]),
        min(max(c, C_BOUNDS[0]), C_BOUNDS[1]),
    )
    fitted = curve.evaluate(xs)
    res = ys - fitted
    return GompertzFit(
        curve=curve,
        r2=r_squared(ys.tolist(), fitted.tolist()),
        residuals=tuple(float(r) for r in res),
        rmse=float(np.sqrt(np.mean(res**2))),
    )
