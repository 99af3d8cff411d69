"""The Gompertz model of accuracy against the fraction of an image's data that is sent.

Zhao et al. (Globecom Workshops 2020) found that a classifier given a fraction ``x`` of
an image's bytes answers correctly with probability close to

    acc(x) = a * exp(-b * exp(-c * x))        a in (0, 1], b > 0, c > 0

``a`` is the accuracy with all the data (the asymptote), ``a * exp(-b)`` the accuracy
with none, and ``c`` how fast it climbs. :meth:`GompertzCurve.inverse` gives the
smallest ``x`` that reaches a target accuracy.

This is what the edge evaluates at run time. Fitting the three numbers to measured
points (``camoffload calibrate``) is :mod:`camoffload.gompertz_fit`, which needs SciPy
(the ``eval`` extra): an edge that only evaluates a fitted curve never does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["A_BOUNDS", "B_BOUNDS", "C_BOUNDS", "GompertzCurve"]

# The parameters' bounds, for a curve and for its fit: ``a`` is a probability; b and c
# wide enough for any curve whose climb happens inside 0 <= x <= a few.
A_BOUNDS = (1e-6, 1.0)
B_BOUNDS = (1e-6, 1e4)
C_BOUNDS = (1e-3, 1e3)


@dataclass(frozen=True, slots=True)
class GompertzCurve:
    """``a * exp(-b * exp(-c * x))``: accuracy given a fraction ``x`` of the data."""

    a: float
    b: float
    c: float

    def __post_init__(self) -> None:
        for name, value, (low, high) in (
            ("a", self.a, A_BOUNDS),
            ("b", self.b, B_BOUNDS),
            ("c", self.c, C_BOUNDS),
        ):
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"Gompertz parameter {name}={value!r} is outside {low}..{high}")

    def __call__(self, x: float) -> float:
        return self.a * math.exp(-self.b * math.exp(-self.c * x))

    def evaluate(self, xs: npt.ArrayLike) -> npt.NDArray[np.float64]:
        x = np.asarray(xs, dtype=np.float64)
        return np.asarray(self.a * np.exp(-self.b * np.exp(-self.c * x)), dtype=np.float64)

    @property
    def floor(self) -> float:
        """The accuracy the curve gives with no data at all (x = 0)."""
        return self(0.0)

    def inverse(self, accuracy: float) -> float | None:
        """The smallest ``x >= 0`` with ``acc(x) >= accuracy``; ``None`` if the curve
        never reaches it (``accuracy >= a``)."""
        if accuracy <= self.floor:
            return 0.0
        if accuracy >= self.a:
            return None
        # a exp(-b exp(-cx)) = y  <=>  x = -ln(-ln(y / a) / b) / c
        return max(0.0, -math.log(-math.log(accuracy / self.a) / self.b) / self.c)
