"""Prometheus metrics of an edge node, the counterpart of ``cloud_worker/metrics.py``.

========================================  ===========================================
metric                                    what
========================================  ===========================================
camoffload_edge_captured_total            frames captured
camoffload_edge_frames_total{decision}    captured frames by final decision
camoffload_edge_bytes_sent_total          request bytes published to the broker
camoffload_edge_rtt_seconds               histogram: publish to reply, answered frames
camoffload_edge_in_flight                 frames offloaded and not yet decided
camoffload_edge_offload_share             offloaded / decided over the stats window
camoffload_edge_event_loop_lag_seconds    histogram: how late the loop woke a sleeper
process_resident_memory_bytes             and the rest of the process collector
========================================  ===========================================

Every series carries the label ``edge``. The offload share over any range is also
``sum(rate(camoffload_edge_frames_total{decision=~"cloud|local-after-.*"}[1m])) /
sum(rate(camoffload_edge_frames_total[1m]))``; the gauge is the edge's own window, for
dashboards that show one number. Each edge has its own registry, so two edges in one
process (tests, the demo) never share counters.
"""

from __future__ import annotations

import logging
import math

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)

from edge_node.stats import EdgeStatsSnapshot
from pipeline.looplag import LAG_BUCKETS_S
from pipeline.protocol import Decision
from pipeline.service import MetricsEndpoint

__all__ = ["EdgeMetrics"]

logger = logging.getLogger(__name__)

# Seconds; from a loopback broker (about 1 ms) to a deadline of several seconds.
_RTT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class EdgeMetrics:
    """Counters, histogram and gauges for one edge, and the endpoint that serves them.

    The recording methods have the same names and arguments as :class:`EdgeStats`'s,
    so the node feeds both from the same places.
    """

    def __init__(self, edge_id: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        names = ["edge"]

        frames = Counter(
            "camoffload_edge_frames",
            "Captured frames by final decision: local, cloud, local-after-timeout, "
            "local-after-busy, local-after-error, skipped, dropped",
            [*names, "decision"],
            registry=self.registry,
        )
        # Every decision exists from the start at 0, so rate() and the share above
        # work before the first frame of each kind instead of missing a series.
        self._frames = {d: frames.labels(edge=edge_id, decision=d.value) for d in Decision}
        self._captured = Counter(
            "camoffload_edge_captured", "Frames captured", names, registry=self.registry
        ).labels(edge=edge_id)
        self._bytes_sent = Counter(
            "camoffload_edge_bytes_sent",
            "Bytes of frame requests published to the broker",
            names,
            registry=self.registry,
        ).labels(edge=edge_id)
        self._rtt = Histogram(
            "camoffload_edge_rtt_seconds",
            "Publish to reply, for frames a worker answered (results and error replies)",
            names,
            buckets=_RTT_BUCKETS,
            registry=self.registry,
        ).labels(edge=edge_id)
        self.loop_lag = Histogram(
            "camoffload_edge_event_loop_lag_seconds",
            "How late the edge's event loop woke a sleeping task (a blocked loop shows here)",
            names,
            buckets=LAG_BUCKETS_S,
            registry=self.registry,
        ).labels(edge=edge_id)
        # process_resident_memory_bytes, CPU seconds, open fds: what a soak watches.
        ProcessCollector(registry=self.registry)
        self._in_flight = Gauge(
            "camoffload_edge_in_flight",
            "Frames offloaded and waiting for their decision",
            names,
            registry=self.registry,
        ).labels(edge=edge_id)
        self._offload_share = Gauge(
            "camoffload_edge_offload_share",
            "Offloaded / decided frames over the edge's stats window (NaN: no decisions)",
            names,
            registry=self.registry,
        ).labels(edge=edge_id)
        self._offload_share.set(math.nan)
        self._endpoint = MetricsEndpoint(self.registry)

    def record_capture(self) -> None:
        self._captured.inc()

    def record_decision(self, decision: Decision, *, rtt_ms: float | None, bytes_sent: int) -> None:
        """A frame's final decision; ``rtt_ms`` only when a reply came back."""
        self._frames[decision].inc()
        if bytes_sent:
            self._bytes_sent.inc(bytes_sent)
        if rtt_ms is not None:
            self._rtt.observe(rtt_ms / 1000)

    def set_in_flight(self, frames: int) -> None:
        self._in_flight.set(frames)

    def update(self, snapshot: EdgeStatsSnapshot) -> None:
        """Copy the windowed figures (the offload share) from the edge's stats."""
        share = snapshot.offload_share
        self._offload_share.set(math.nan if share is None else share)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Start the HTTP endpoint (a daemon thread); returns the bound port (``port``
        0 picks a free one)."""
        return self._endpoint.serve(port, addr)

    def close(self) -> None:
        """Stop the endpoint and join its thread, if serving; safe to call again."""
        self._endpoint.close()
