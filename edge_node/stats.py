"""Running figures of an edge node: rates over a sliding window, and totals.

The edge's live console line, its Home Assistant state and its offload-share gauge are
all read from one :class:`EdgeStats`. The ledger keeps every round trip for the final
summary; this keeps a bounded amount whatever the frame rate or uptime:

* one bucket per second for the last ``ceil(window_s)`` seconds plus the current one
  (a fixed-length deque), each with its counts and a reservoir of at most
  ``rtt_samples`` round trips;
* cumulative counters (plain integers).

Every captured frame gets exactly one decision, and a skip or a drop *is* a decision
(``Decision.SKIPPED``, ``Decision.DROPPED``): call exactly one of ``record_decision``,
``record_skip`` or ``record_drop`` per frame, never two. ``offload_share`` is therefore
the share of *all* decided frames that went to the cloud, skipped ones included.

Not thread-safe: the node calls it from its event loop only.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pipeline.protocol import Decision

__all__ = ["EdgeStats", "EdgeStatsSnapshot", "format_status_line"]

_BUCKET_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeStatsSnapshot:
    """The figures at one instant. Rates are per second over ``window_s``; the
    ``rtt_*`` and ``offload_share`` are ``None`` when nothing in the window says."""

    window_s: float
    capture_fps: float
    skipped_fps: float
    dropped_fps: float
    decided_fps: float
    offload_share: float | None  # offloaded / decided, both in the window
    rtt_ms_p50: float | None
    rtt_ms_p95: float | None
    bytes_per_s: float
    captured: int
    decided: int
    skipped: int
    dropped: int
    offloaded: int
    bytes_sent: int
    by_decision: dict[str, int] = field(default_factory=dict)  # non-zero only
    last_decision: str | None = None


@dataclass(slots=True)
class _Bucket:
    second: int
    captured: int = 0
    decided: int = 0
    skipped: int = 0
    dropped: int = 0
    offloaded: int = 0
    bytes_sent: int = 0
    rtt_seen: int = 0  # round trips that fell in this second; rtts holds a sample
    rtts: list[float] = field(default_factory=list)


class EdgeStats:
    """Sliding-window rates and cumulative totals of one edge node.

    ``clock`` is monotonic seconds; every ``now`` argument overrides it for one call
    (tests pass explicit times). Rates divide by the span actually covered: the whole
    seconds of the window plus the current partial one, or the time since the first
    record when that is shorter (at least one second, so a single early frame does
    not read as a huge rate).
    """

    def __init__(
        self,
        window_s: float = 10.0,
        *,
        rtt_samples: int = 64,
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
    ) -> None:
        if not math.isfinite(window_s) or window_s < _BUCKET_S:
            raise ValueError(f"window_s must be a finite number >= {_BUCKET_S}, got {window_s}")
        if rtt_samples < 1:
            raise ValueError(f"rtt_samples must be >= 1, got {rtt_samples}")
        self._window_buckets = math.ceil(window_s / _BUCKET_S)
        # +1: the current, partial second rides along with the full ones.
        self._buckets: deque[_Bucket] = deque(maxlen=self._window_buckets + 1)
        self._rtt_samples = rtt_samples
        self._clock = clock
        # Seeded, so a test (or two runs over the same frames) sees the same sample.
        self._rng = random.Random(seed)
        self._started: float | None = None
        self._captured = 0
        self._bytes_sent = 0
        self._by_decision: Counter[Decision] = Counter()
        self._last_decision: Decision | None = None

    @property
    def max_buckets(self) -> int:
        """The most buckets ever held: the memory bound, whatever the frame rate."""
        return self._window_buckets + 1

    @property
    def buckets_held(self) -> int:
        return len(self._buckets)

    @property
    def samples_held(self) -> int:
        """Round-trip samples held across all buckets (at most buckets x rtt_samples)."""
        return sum(len(b.rtts) for b in self._buckets)

    def record_capture(self, now: float | None = None) -> None:
        self._captured += 1
        bucket = self._bucket(self._now(now))
        if bucket is not None:
            bucket.captured += 1

    def record_skip(self, now: float | None = None) -> None:
        """The frame showed no motion and was not classified (its one decision)."""
        self.record_decision(Decision.SKIPPED, rtt_ms=None, bytes_sent=0, now=now)

    def record_drop(self, now: float | None = None) -> None:
        """The pipeline fell behind and discarded the frame (its one decision)."""
        self.record_decision(Decision.DROPPED, rtt_ms=None, bytes_sent=0, now=now)

    def record_decision(
        self,
        decision: Decision,
        *,
        rtt_ms: float | None,
        bytes_sent: int,
        now: float | None = None,
    ) -> None:
        """A frame's final decision; ``rtt_ms`` only when a reply came back."""
        if bytes_sent < 0:
            raise ValueError(f"bytes_sent must be >= 0, got {bytes_sent}")
        self._by_decision[decision] += 1
        self._bytes_sent += bytes_sent
        self._last_decision = decision
        bucket = self._bucket(self._now(now))
        if bucket is None:
            return
        bucket.decided += 1
        bucket.bytes_sent += bytes_sent
        if decision is Decision.SKIPPED:
            bucket.skipped += 1
        elif decision is Decision.DROPPED:
            bucket.dropped += 1
        if decision.offloaded:
            bucket.offloaded += 1
        if rtt_ms is not None:
            self._sample_rtt(bucket, rtt_ms)

    def snapshot(self, now: float | None = None) -> EdgeStatsSnapshot:
        t = self._now(now)
        current = self._second(t)
        oldest = current - self._window_buckets
        window = [b for b in self._buckets if oldest <= b.second <= current]
        start = oldest * _BUCKET_S
        if self._started is not None:
            start = max(start, self._started)
        span = max(t - start, _BUCKET_S)

        def rate(count: int) -> float:
            return count / span

        decided = sum(b.decided for b in window)
        offloaded = sum(b.offloaded for b in window)
        p50, p95 = _weighted_percentiles(window, (50, 95))
        return EdgeStatsSnapshot(
            window_s=span,
            capture_fps=rate(sum(b.captured for b in window)),
            skipped_fps=rate(sum(b.skipped for b in window)),
            dropped_fps=rate(sum(b.dropped for b in window)),
            decided_fps=rate(decided),
            offload_share=offloaded / decided if decided else None,
            rtt_ms_p50=p50,
            rtt_ms_p95=p95,
            bytes_per_s=rate(sum(b.bytes_sent for b in window)),
            captured=self._captured,
            decided=sum(self._by_decision.values()),
            skipped=self._by_decision[Decision.SKIPPED],
            dropped=self._by_decision[Decision.DROPPED],
            offloaded=sum(n for d, n in self._by_decision.items() if d.offloaded),
            bytes_sent=self._bytes_sent,
            by_decision={d.value: self._by_decision[d] for d in Decision if self._by_decision[d]},
            last_decision=None if self._last_decision is None else self._last_decision.value,
        )

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    @staticmethod
    def _second(t: float) -> int:
        return math.floor(t / _BUCKET_S)

    def _bucket(self, t: float) -> _Bucket | None:
        """The bucket for ``t``, appending one for a new second (the deque's maxlen
        drops the oldest). ``None`` for an earlier second that holds no bucket (out of
        order, or already expired): that record counts in the totals only."""
        if self._started is None:
            self._started = t
        second = self._second(t)
        if not self._buckets or second > self._buckets[-1].second:
            self._buckets.append(_Bucket(second))
            return self._buckets[-1]
        # Out of order (an explicit ``now`` from the past): only an existing bucket.
        for bucket in reversed(self._buckets):
            if bucket.second == second:
                return bucket
        return None

    def _sample_rtt(self, bucket: _Bucket, rtt_ms: float) -> None:
        # Reservoir sampling (Vitter's algorithm R): every round trip of this second
        # has the same chance to be in the sample, and memory stays at rtt_samples.
        bucket.rtt_seen += 1
        if len(bucket.rtts) < self._rtt_samples:
            bucket.rtts.append(rtt_ms)
            return
        slot = self._rng.randrange(bucket.rtt_seen)
        if slot < self._rtt_samples:
            bucket.rtts[slot] = rtt_ms


def _weighted_percentiles(
    buckets: Iterable[_Bucket], quantiles: tuple[int, ...]
) -> tuple[float | None, ...]:
    """Nearest-rank percentiles (as the ledger computes them) over the buckets'
    samples, each weighted by how many round trips it stands for, so a busy second
    counts for more than a quiet one. Exact while no bucket overflowed its sample."""
    weighted: list[tuple[float, float]] = []
    for bucket in buckets:
        if bucket.rtts:
            weight = bucket.rtt_seen / len(bucket.rtts)
            weighted.extend((value, weight) for value in bucket.rtts)
    if not weighted:
        return tuple(None for _ in quantiles)
    weighted.sort()
    total = sum(w for _, w in weighted)
    results: list[float | None] = []
    for q in quantiles:
        cumulative = 0.0
        chosen = weighted[-1][0]
        for value, weight in weighted:
            cumulative += weight
            # Integer percent on both sides: exact for whole weights (no 0.95 * 20).
            if cumulative * 100 >= q * total:
                chosen = value
                break
        results.append(chosen)
    return tuple(results)


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def _data_rate(bytes_per_s: float) -> str:
    if bytes_per_s < 1000:
        return f"{bytes_per_s:.0f} B/s"
    if bytes_per_s < 1_000_000:
        return f"{bytes_per_s / 1000:.0f} kB/s"
    return f"{bytes_per_s / 1_000_000:.1f} MB/s"


def format_status_line(snapshot: EdgeStatsSnapshot) -> str:
    """One short line for the edge's live console, e.g.
    ``12.5 fps | skipped 3.1/s | offload 24% | rtt p50 18 ms p95 41 ms | 310 kB/s |
    decided 1234`` (``| dropped N`` is added once any frame was dropped)."""
    s = snapshot
    offload = "offload -" if s.offload_share is None else f"offload {s.offload_share:.0%}"
    if s.rtt_ms_p50 is None or s.rtt_ms_p95 is None:
        rtt = "rtt -"
    else:
        rtt = f"rtt p50 {_ms(s.rtt_ms_p50)} ms p95 {_ms(s.rtt_ms_p95)} ms"
    parts = [
        f"{s.capture_fps:.1f} fps",
        f"skipped {s.skipped_fps:.1f}/s",
        offload,
        rtt,
        _data_rate(s.bytes_per_s),
        f"decided {s.decided}",
    ]
    if s.dropped:
        parts.append(f"dropped {s.dropped}")
    return " | ".join(parts)
