"""How much of a frame to send: the per-frame JPEG quality (and resolution) chooser.

The routing policy (``edge.policy``) says whether a frame *may* go to the cloud; this
says how, or whether it is worth it at all (``edge.quality_policy``):

``fixed``     all-or-nothing, the baseline: every offloaded frame is a full JPEG at
              ``edge.jpeg_quality``.
``gompertz``  the fitted curve of the cloud's accuracy against bytes
              (:mod:`pipeline.calibration`) prices each operating point (quality,
              scale) of the calibration's Pareto frontier for this frame:

    expected(keep local)  = local accuracy in this frame's confidence bin
    expected(send at p)   = curve_bin(x_p)            if it arrives by the deadline
                          = expected(keep local)      if it would not (a late answer
                                                       is replaced by the local one)

  where "arrives" is predicted from the link estimate (recent network time, corrected
  for the size difference over the bandwidth) plus the workers' queue-and-compute
  estimate, against ``deadline_margin`` of the time left. With ``edge.target_accuracy``
  it sends the fewest bytes whose expected accuracy reaches the target (keeping the
  frame local when the local answer already does); without one, or when nothing
  reaches it, the fewest bytes within ``edge.accuracy_slack`` of the best expected
  accuracy.

A missing or malformed calibration is logged as a warning and the edge falls back to
``fixed`` (full quality): a camera never stops over a research file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edge_node.estimators import LinkEstimate
from edge_node.local_model import LocalOutput
from pipeline.calibration import (
    Calibration,
    CalibrationError,
    default_calibration_path,
    load_calibration,
)
from pipeline.config import EdgeConfig
from pipeline.gompertz import GompertzCurve
from pipeline.protocol import PayloadCodec

__all__ = [
    "Conditions",
    "FixedQuality",
    "GompertzQuality",
    "QualityChoice",
    "QualityPolicy",
    "make_quality_policy",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class QualityChoice:
    offload: bool  # False: the local answer is expected to be as good; send nothing
    codec: PayloadCodec
    quality: int
    scale: float  # of the frame's resolution, (0, 1]
    expected_accuracy: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class Conditions:
    """What the edge knows when a frame is about to go."""

    time_left_ms: float  # until the frame's deadline
    link: LinkEstimate
    worker_ms: float  # the workers' expected queue + compute time for one more frame
    overhead_bytes: float = 0.0  # envelope and MQTT headers beyond the payload


class QualityPolicy(Protocol):
    @property
    def name(self) -> str: ...

    def choose(self, local: LocalOutput | None, conditions: Conditions) -> QualityChoice: ...


@dataclass(frozen=True, slots=True)
class FixedQuality:
    """All-or-nothing: a full JPEG at one quality, whatever the frame or the link."""

    quality: int
    name: str = "fixed"

    def choose(self, local: LocalOutput | None, conditions: Conditions) -> QualityChoice:
        return QualityChoice(True, PayloadCodec.JPEG, self.quality, 1.0, None, "fixed")


@dataclass(frozen=True, slots=True)
class _Option:
    bytes: float
    expected: float
    quality: int = 0  # 0: keep the frame local
    scale: float = 1.0
    predicted: float = 0.0
    on_time: bool = True


class GompertzQuality:
    """The cheapest operating point that the fitted curve says is good enough."""

    name = "gompertz"

    def __init__(
        self,
        calibration: Calibration,
        *,
        target_accuracy: float | None = None,
        slack: float = 0.005,
        deadline_margin: float = 0.8,
        use_bins: bool = True,
    ) -> None:
        if target_accuracy is not None and not 0.0 <= target_accuracy <= 1.0:
            raise ValueError("target_accuracy must be 0-1")
        if not 0.0 <= slack <= 1.0 or not 0.0 < deadline_margin <= 1.0:
            raise ValueError("slack must be 0-1 and deadline_margin in (0, 1]")
        self.calibration = calibration
        self._target = target_accuracy
        self._slack = slack
        self._margin = deadline_margin
        self._use_bins = use_bins and bool(calibration.bins)
        self._codec = PayloadCodec(calibration.codec)
        self._points = calibration.frontier

    def _curve_and_local(self, local: LocalOutput | None) -> tuple[GompertzCurve, float | None]:
        if local is None:
            return self.calibration.curve.curve, None
        if self._use_bins:
            found = self.calibration.bin_for(local.confidence)
            if found is not None:
                return found.curve.curve, found.local_accuracy
        return self.calibration.curve.curve, local.confidence

    def options(self, local: LocalOutput | None, conditions: Conditions) -> list[_Option]:
        """Keeping the frame (its local answer, if any) and each frontier point, priced."""
        curve, local_accuracy = self._curve_and_local(local)
        fallback = 0.0 if local_accuracy is None else local_accuracy
        budget = conditions.time_left_ms * self._margin
        # Keeping the frame is always an option. With no local answer it is worth
        # nothing, so it wins only when no quality can arrive in time; then sending
        # would cost bytes for an answer that comes too late, and would queue ahead of
        # the frames that could still make it.
        out = [_Option(0.0, fallback)]
        for point in self._points:
            size = point.bytes + conditions.overhead_bytes
            arrives = conditions.link.network_ms_for(size) + conditions.worker_ms
            predicted = curve(point.x)
            on_time = arrives <= budget
            out.append(
                _Option(
                    point.bytes,
                    predicted if on_time else fallback,
                    point.quality,
                    point.scale,
                    predicted,
                    on_time,
                )
            )
        return out

    def choose(self, local: LocalOutput | None, conditions: Conditions) -> QualityChoice:
        options = sorted(self.options(local, conditions), key=lambda o: o.bytes)
        chosen: _Option | None = None
        reason = ""
        if self._target is not None:
            chosen = next((o for o in options if o.on_time and o.expected >= self._target), None)
            reason = f"cheapest reaching {self._target:.3f}"
        if chosen is None:
            best = max(o.expected for o in options)
            chosen = next(o for o in options if o.expected >= best - self._slack)
            reason = f"cheapest within {self._slack:g} of the best {best:.3f}"
            if not any(o.on_time for o in options if o.quality):
                reason = "no quality arrives before the deadline"
        if chosen.quality == 0:
            return QualityChoice(
                False, self._codec, 0, 1.0, chosen.expected, f"gompertz: local, {reason}"
            )
        return QualityChoice(
            True,
            self._codec,
            chosen.quality,
            chosen.scale,
            chosen.expected,
            f"gompertz: q{chosen.quality} x{chosen.scale:g}, {reason}",
        )


def _fall_back(cfg: EdgeConfig, why: str) -> FixedQuality:
    logger.warning(
        "edge %s: Gompertz quality disabled, sending full quality (q%d): %s",
        cfg.edge_id,
        cfg.jpeg_quality,
        why,
    )
    return FixedQuality(cfg.jpeg_quality)


def make_quality_policy(cfg: EdgeConfig, *, local_split: int | None = None) -> QualityPolicy:
    """The chooser that ``cfg`` asks for; a broken calibration falls back to fixed."""
    if cfg.quality_policy == "fixed":
        return FixedQuality(cfg.jpeg_quality)
    path = Path(cfg.calibration) if cfg.calibration else default_calibration_path(cfg.model)
    try:
        calibration = load_calibration(path)
    except CalibrationError as exc:
        return _fall_back(cfg, str(exc))
    if calibration.model != cfg.model:
        return _fall_back(
            cfg, f"{path} calibrates {calibration.model!r}, but the edge asks {cfg.model!r}"
        )
    use_bins = calibration.local_model == cfg.local_model and calibration.local_split == local_split
    if calibration.bins and not use_bins:
        logger.warning(
            "edge %s: %s binned confidence of %s (split %s), not of this edge's %s (split "
            "%s): using its overall curve and the local confidence as local accuracy",
            cfg.edge_id,
            path,
            calibration.local_model,
            calibration.local_split,
            cfg.local_model,
            local_split,
        )
    return GompertzQuality(
        calibration,
        target_accuracy=cfg.target_accuracy,
        slack=cfg.accuracy_slack,
        use_bins=use_bins,
    )
