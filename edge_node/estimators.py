"""What the edge knows about its link and the workers, from what it has already seen.

* :class:`DecayingAverage`: an exponentially weighted moving average whose weight
  grows with the time since the last sample (``half_life_s``), so a burst of samples
  does not erase the past in a blink and a stale estimate gives way quickly.
* :class:`LinkEstimator`: from each answered offload (bytes on the wire, round trip,
  the worker's own time from the ``Result``), the network time, the smallest recent
  network time (the base: propagation plus fixed costs), and the uplink bandwidth
  (bytes over the network time above the base). It predicts the network time of a
  message of ``n`` bytes: the recent network time, corrected by the size difference
  over the bandwidth.
* :class:`WorkerLoad`: from the workers' retained status, how long a new frame would
  wait and compute: (queue depth + 1) x latency per image, over the fresh, online
  workers (the shared subscription spreads frames among them: the mean).

All are plain objects driven by the node's event loop, with injectable clocks.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.protocol import WorkerStatus

__all__ = ["DecayingAverage", "LinkEstimate", "LinkEstimator", "WorkerLoad"]


class DecayingAverage:
    """EWMA with a time-based weight: ``w = max(min_weight, 1 - 0.5 ** (dt / half_life))``.

    The first sample is taken as is. ``value`` is ``None`` until then.
    """

    def __init__(
        self,
        half_life_s: float,
        *,
        min_weight: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if half_life_s <= 0 or not 0 < min_weight <= 1:
            raise ValueError("half_life_s must be > 0 and min_weight in (0, 1]")
        self._half_life = half_life_s
        self._min_weight = min_weight
        self._clock = clock
        self._value: float | None = None
        self._last = 0.0

    @property
    def value(self) -> float | None:
        return self._value

    def update(self, sample: float) -> float:
        now = self._clock()
        if self._value is None:
            self._value = sample
        else:
            weight = max(self._min_weight, 1.0 - 0.5 ** ((now - self._last) / self._half_life))
            self._value += weight * (sample - self._value)
        self._last = now
        return self._value


@dataclass(frozen=True, slots=True)
class LinkEstimate:
    network_ms: float | None  # recent network time of a message (round trip - worker time)
    message_bytes: float | None  # recent mean message size on the wire
    base_ms: float | None  # smallest recent network time
    bytes_per_s: float | None  # uplink bandwidth; None while unknown

    def network_ms_for(self, size: float) -> float:
        """Predicted network time of a message of ``size`` bytes (0 when nothing is known)."""
        if self.network_ms is None or self.message_bytes is None:
            if self.bytes_per_s is None:
                return 0.0
            return 1000.0 * size / self.bytes_per_s
        if self.bytes_per_s is None:
            return self.network_ms
        predicted = self.network_ms + 1000.0 * (size - self.message_bytes) / self.bytes_per_s
        return max(self.base_ms or 0.0, predicted)


class LinkEstimator:
    """Round trips and bandwidth from answered offloads.

    ``prior_bytes_per_s`` (``edge.link_kbps``) is the bandwidth until a measurement
    replaces it. A sample whose network time is within ``min_transfer_ms`` of the base
    says the link is not the bottleneck and carries no bandwidth information.
    """

    def __init__(
        self,
        *,
        half_life_s: float = 2.0,
        window: int = 64,
        prior_bytes_per_s: float | None = None,
        min_transfer_ms: float = 2.0,
        probe_after_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._probe_after_s = probe_after_s
        self._last_sample: float | None = None
        self._network = DecayingAverage(half_life_s, clock=clock)
        self._size = DecayingAverage(half_life_s, clock=clock)
        self._bandwidth = DecayingAverage(half_life_s, clock=clock)
        self._recent: deque[float] = deque(maxlen=window)
        self._prior = prior_bytes_per_s
        self._min_transfer_ms = min_transfer_ms

    def record(self, *, message_bytes: int, rtt_ms: float, worker_ms: float = 0.0) -> None:
        self._last_sample = self._clock()
        network_ms = max(0.0, rtt_ms - max(0.0, worker_ms))
        self._recent.append(network_ms)
        base = min(self._recent)
        self._network.update(network_ms)
        self._size.update(float(message_bytes))
        transfer_ms = network_ms - base
        if transfer_ms >= self._min_transfer_ms and message_bytes > 0:
            self._bandwidth.update(1000.0 * message_bytes / transfer_ms)

    def record_timeout(self, *, message_bytes: int, waited_ms: float) -> None:
        """A frame sent ``waited_ms`` ago got no answer by its deadline: its round trip
        was at least that. Counted as a sample of exactly that (an underestimate), so a
        link too slow for the deadline shows in the estimate even when no answer ever
        arrives; otherwise an edge that only ever times out would keep believing the
        link is fast and keep sending frames that cannot arrive in time."""
        self.record(message_bytes=message_bytes, rtt_ms=waited_ms)

    def estimate(self) -> LinkEstimate:
        now = self._clock()
        if self._last_sample is not None and now - self._last_sample > self._probe_after_s:
            # Nothing measured for a while: a policy that judged the link hopeless has
            # stopped sending, so nothing would ever say it recovered. Once per
            # ``probe_after_s`` the estimate is "unknown" for one frame: that frame
            # goes, and its answer (or its timeout) refreshes the estimate.
            self._last_sample = now
            return LinkEstimate(None, None, None, self._prior)
        return LinkEstimate(
            network_ms=self._network.value,
            message_bytes=self._size.value,
            base_ms=min(self._recent) if self._recent else None,
            bytes_per_s=self._bandwidth.value or self._prior,
        )


@dataclass(slots=True)
class _Seen:
    status: WorkerStatus
    at: float


class WorkerLoad:
    """The workers' expected queue-and-compute time for one more frame."""

    def __init__(
        self, *, fresh_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._fresh_s = fresh_s
        self._clock = clock
        self._workers: dict[str, _Seen] = {}

    def on_status(self, status: WorkerStatus) -> None:
        self._workers[status.worker_id] = _Seen(status, self._clock())

    def wait_and_per_image_ms(self) -> tuple[float, float]:
        """(queue wait, compute per image) of a new frame, means over fresh online
        workers; (0, 0) when none has reported."""
        now = self._clock()
        fresh = [
            seen.status
            for seen in self._workers.values()
            if seen.status.online and now - seen.at <= self._fresh_s
        ]
        if not fresh:
            return 0.0, 0.0
        waits = [s.queue_depth * s.latency_ms_per_image for s in fresh]
        per_image = [s.latency_ms_per_image for s in fresh]
        wait, each = sum(waits) / len(waits), sum(per_image) / len(per_image)
        if not (math.isfinite(wait) and math.isfinite(each)):
            return 0.0, 0.0
        return wait, each

    def estimated_ms(self) -> float:
        """Mean over fresh online workers of (queue depth + 1) x ms per image; 0 if none."""
        now = self._clock()
        times = [
            (seen.status.queue_depth + 1) * seen.status.latency_ms_per_image
            for seen in self._workers.values()
            if seen.status.online and now - seen.at <= self._fresh_s
        ]
        if not times:
            return 0.0
        value = sum(times) / len(times)
        return value if math.isfinite(value) else 0.0
