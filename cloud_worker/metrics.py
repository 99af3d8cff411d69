"""Prometheus metrics of a worker, named after NVIDIA Triton's so dashboards carry over.

Triton                                   camoffload
nv_inference_request_success/failure     camoffload_worker_requests_total{outcome}
nv_inference_count                       camoffload_worker_inferences_total
nv_inference_exec_count                  camoffload_worker_batches_total
nv_inference_queue_duration_us           camoffload_worker_queue_duration_seconds
nv_inference_compute_infer_duration_us   camoffload_worker_compute_duration_seconds
                                         camoffload_worker_event_loop_lag_seconds
                                         process_resident_memory_bytes (and the rest
                                         of Prometheus's process collector)

Average batch size = rate(inferences_total) / rate(batches_total). Each worker has its
own registry, so two workers in one process (tests, benchmarks) never share counters.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)

from pipeline.looplag import LAG_BUCKETS_S
from pipeline.protocol import ErrorCode
from pipeline.service import MetricsEndpoint

__all__ = ["WorkerMetrics"]

logger = logging.getLogger(__name__)

# Seconds; from sub-millisecond batches of a small model to multi-second queues.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class WorkerMetrics:
    """Counters and histograms for one worker, and the endpoint that serves them."""

    def __init__(self, worker_id: str, model: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"worker": worker_id, "model": model}
        names = list(labels)

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, [*names, *extra], registry=self.registry)

        self._requests = counter(
            "camoffload_worker_requests",
            "Frame requests by outcome: ok, expired, busy, error (bad_request, unknown_model, "
            "shutting_down, internal)",
            ("outcome",),
        )
        self._errors = counter("camoffload_worker_errors", "Error replies by code", ("code",))
        self._inferences = counter(
            "camoffload_worker_inferences", "Images (or tensors) the model computed"
        ).labels(**labels)
        self._batches = counter(
            "camoffload_worker_batches", "Batches executed (forward passes)"
        ).labels(**labels)
        self._bad_messages = counter(
            "camoffload_worker_bad_messages", "Messages that were not a valid frame request"
        ).labels(**labels)
        self._overflowed = counter(
            "camoffload_worker_receive_overflow",
            "Messages refused at once because the receive queue was full (a burst): each "
            "answered busy (or bad_request) before its PUBACK, never dropped",
        ).labels(**labels)
        self._queue = Histogram(
            "camoffload_worker_queue_duration_seconds",
            "Time a request waited in the queue before its batch started",
            names,
            buckets=_BUCKETS,
            registry=self.registry,
        ).labels(**labels)
        self._compute = Histogram(
            "camoffload_worker_compute_duration_seconds",
            "Wall time of one batch in the inference thread (decode + inference)",
            names,
            buckets=_BUCKETS,
            registry=self.registry,
        ).labels(**labels)
        self.loop_lag = Histogram(
            "camoffload_worker_event_loop_lag_seconds",
            "How late the worker's event loop woke a sleeping task (a blocked loop shows here)",
            names,
            buckets=LAG_BUCKETS_S,
            registry=self.registry,
        ).labels(**labels)
        # process_resident_memory_bytes, CPU seconds, open fds: what a soak watches.
        ProcessCollector(registry=self.registry)
        self.queue_depth = Gauge(
            "camoffload_worker_queue_depth", "Requests waiting", names, registry=self.registry
        ).labels(**labels)
        self._labels = labels
        self._by_outcome: dict[str, Any] = {}  # prometheus_client's children are untyped
        self._endpoint = MetricsEndpoint(self.registry)

    def request(self, outcome: str, count: int = 1) -> None:
        child = self._by_outcome.get(outcome)
        if child is None:  # labels() costs ~2 us: once per outcome, not per frame
            child = self._by_outcome[outcome] = self._requests.labels(
                **self._labels, outcome=outcome
            )
        child.inc(count)

    def error(self, code: ErrorCode) -> None:
        """One error reply (or a refusal with nowhere to reply)."""
        outcome = code.value if code in (ErrorCode.EXPIRED, ErrorCode.BUSY) else "error"
        self.request(outcome)
        self._errors.labels(**self._labels, code=code.value).inc()

    def bad_message(self) -> None:
        self._bad_messages.inc()

    def receive_overflow(self) -> None:
        self._overflowed.inc()

    def batch(self, size: int, compute_s: float, queue_s: list[float]) -> None:
        self._batches.inc()
        self._inferences.inc(size)
        self._compute.observe(compute_s)
        for wait in queue_s:
            self._queue.observe(wait)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Start the HTTP endpoint (a daemon thread); returns the bound port (``port``
        0 picks a free one)."""
        return self._endpoint.serve(port, addr)

    def close(self) -> None:
        """Stop the endpoint and join its thread, if serving; safe to call again."""
        self._endpoint.close()
