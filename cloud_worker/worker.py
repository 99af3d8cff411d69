"""The cloud worker service: frames in over a shared subscription, answers out.

The worker is wiring: process set-up (CPU pinning, torch threads, the model, a frozen
start-up heap, the metrics endpoint), then a :class:`~pipeline.service.BrokerLink` that
runs one :class:`~cloud_worker.session.WorkerSession` per broker connection. What
outlives a connection (the backlog of frames, the stats behind the deadline estimate,
the reply publisher, the inference thread) is made once here and shared by sessions.

The event loop only moves bytes. Decoding runs in its own thread one batch ahead of
inference, and inference in one dedicated thread, so torch never competes with itself
and the loop never blocks (:mod:`cloud_worker.stages`).

Deadlines are checked on arrival and again when a batch is formed, both against the
worker's one estimate of when the answer would be ready (:mod:`cloud_worker.admission`).
A frame that would miss its deadline is answered ``expired`` instead of computed: the
edge has fallen back by then.

Shutdown: when ``stop`` is set the session drains (see :mod:`cloud_worker.session`),
publishes its offline status and disconnects. Cancellation skips the drain: queued
frames are answered at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import aiomqtt
import torch

from cloud_worker.admission import Admission
from cloud_worker.backlog import Backlog
from cloud_worker.metrics import WorkerMetrics
from cloud_worker.processing import ServedModel
from cloud_worker.replying import ReplyPublisher
from cloud_worker.session import WorkerParts, WorkerSession
from cloud_worker.stats import WorkerStats
from pipeline.allocator import keep_freed_memory
from pipeline.config import Config
from pipeline.cpus import parse_cpus, pin_process
from pipeline.detection import Detector, is_detector
from pipeline.errors import ModelError
from pipeline.heap import freeze_heap
from pipeline.inference import Classifier
from pipeline.looplag import watch_loop_lag
from pipeline.mqtt import DEFAULT_INCOMING_QUEUE
from pipeline.protocol import WorkerStatus
from pipeline.ratelog import RateLimitedLog
from pipeline.service import BrokerLink, RetainedStatus
from pipeline.tasks import cancel_and_wait

__all__ = ["CloudWorker"]

logger = logging.getLogger(__name__)


class CloudWorker:
    """One worker process's service. ``run()`` until ``stop`` is set or it is cancelled."""

    def __init__(self, config: Config, *, classifier: ServedModel | None = None) -> None:
        self._config = config
        self._cfg = config.worker
        self._topics = config.topics
        self._classifier = classifier
        self._backlog = Backlog(self._cfg.max_queue)
        self.stats = WorkerStats()
        self.metrics = WorkerMetrics(self._cfg.worker_id, self._served_model())
        self._replies = ReplyPublisher(self._cfg.worker_id, self._cfg.qos, self.metrics)
        self._admission = Admission(self._topics, self.stats, served_model=self._served_model)
        self._status = RetainedStatus(
            self._topics.worker_status(self.worker_id),
            self._render_status,
            interval_s=self._cfg.status_interval_s,
        )
        self.bad_messages = 0  # messages refused as malformed, over every connection
        self._refusals = RateLimitedLog(logger, f"worker {self.worker_id}")
        self.metrics_port: int | None = None  # bound port once the endpoint is up

    @property
    def worker_id(self) -> str:
        return self._cfg.worker_id

    def _count_bad_message(self) -> None:
        self.bad_messages += 1

    def _served_model(self) -> str:
        return self._cfg.model if self._classifier is None else self._classifier.spec.name

    def _subscription(self) -> str:
        if self._cfg.shared_subscription:
            return self._topics.shared_frames(self._cfg.group)
        return self._topics.frames_filter

    async def run(
        self, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None
    ) -> None:
        """Serve until ``stop`` is set (drain, then return) or cancelled (no drain).

        ``ready`` is set once subscribed and announced.
        """
        classifier = await self._set_up()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.worker_id}-infer")
        parts = WorkerParts(
            cfg=self._cfg,
            topics=self._topics,
            subscription=self._subscription(),
            classifier=classifier,
            executor=executor,
            backlog=self._backlog,
            admission=self._admission,
            replies=self._replies,
            stats=self.stats,
            metrics=self.metrics,
            status=self._status,
            on_bad_message=self._count_bad_message,
            refusals=self._refusals,
        )
        stop = stop or asyncio.Event()
        link = BrokerLink(
            self._config.broker,
            client_id=self.worker_id,
            what=f"worker {self.worker_id}",
            will=self._status.will,
            # Acknowledged only once queued, answered or refused (the session's receive
            # loop). A burst beyond the client's queue is refused with 'busy' at once,
            # from the client's callback, never dropped (pipeline/mqtt.py).
            manual_ack=True,
            receive_maximum=self._cfg.receive_maximum,
            max_queued_incoming=max(DEFAULT_INCOMING_QUEUE, 4 * self._cfg.max_queue),
        )

        async def session(client: aiomqtt.Client) -> None:
            await self._session(parts, client, stop, ready)

        lag = asyncio.create_task(
            watch_loop_lag(self.metrics.loop_lag.observe), name=f"{self.worker_id}-loop-lag"
        )
        try:
            await link.run(session, stop=stop)
        finally:
            await cancel_and_wait([lag])
            executor.shutdown(wait=False, cancel_futures=True)
            await asyncio.to_thread(self.metrics.close)

    async def _set_up(self) -> ServedModel:
        """Process-wide settings, the model, the heap and the metrics endpoint."""
        if self._cfg.cpus is not None:
            pin_process(parse_cpus(self._cfg.cpus))  # process-wide, like the setting
        if self._cfg.threads is not None:
            torch.set_num_threads(self._cfg.threads)  # process-wide, like the setting
        if self._cfg.keep_freed_memory:
            keep_freed_memory()  # process-wide, like the setting; before the model loads
        if self._classifier is None:
            # Building a model reads weights from disk: keep it off the loop.
            self._classifier = await asyncio.to_thread(self._build_model)
        if self._cfg.freeze_heap:
            # Before serving: the collection it runs first is the pause it saves later.
            frozen = freeze_heap()
            logger.debug("worker %s: froze %d start-up objects", self.worker_id, frozen)
        if self._cfg.metrics_port is not None:
            self.metrics_port = self.metrics.serve(self._cfg.metrics_port, self._cfg.metrics_addr)
        return self._classifier

    def _build_model(self) -> ServedModel:
        cfg = self._cfg
        if is_detector(cfg.model):
            if cfg.half:
                raise ModelError(f"{cfg.model} runs on onnxruntime in float32; drop 'half'")
            return Detector.by_name(
                cfg.model, min_score=cfg.min_score, device=cfg.device, threads=cfg.threads or 0
            )
        return Classifier.by_name(cfg.model, cfg.device, half=cfg.half, frozen=cfg.frozen)

    async def _session(
        self,
        parts: WorkerParts,
        client: aiomqtt.Client,
        stop: asyncio.Event,
        ready: asyncio.Event | None,
    ) -> None:
        """One broker connection: subscribe, announce, serve until stopped or lost."""
        session = WorkerSession(parts, client)
        await client.subscribe(parts.subscription, qos=self._cfg.qos)
        await session.publish_status()
        classifier = parts.classifier
        logger.info(
            "worker %s serving %s (%s%s) on %s",
            self.worker_id,
            classifier.spec.name,
            classifier.device,
            ", float16" if classifier.half else "",
            parts.subscription,
        )
        if ready is not None:
            ready.set()
        try:
            await session.serve(stop)
        finally:
            await session.goodbye()

    def _render_status(self, online: bool) -> bytes:
        classifier = self._classifier
        return WorkerStatus(
            worker_id=self.worker_id,
            online=online,
            ts=time.time(),
            device=str(classifier.device) if classifier else self._cfg.device,
            models=(self._served_model(),),
            queue_depth=self._backlog.waiting(),
            queue_capacity=self._cfg.max_queue,
            mean_batch_size=self.stats.mean_batch_size,
            latency_ms_per_image=self.stats.latency_ms_per_image,
            throughput_fps=self.stats.throughput_fps(),
            frames_done=self.stats.frames_done,
            frames_rejected=self.stats.frames_rejected,
        ).to_bytes()
