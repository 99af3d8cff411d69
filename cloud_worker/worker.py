"""The cloud worker service: frames in over a shared subscription, answers out.

Tasks (cancelled together on shutdown)::

    receive   MQTT messages (one frame or a bundle) -> validate each -> bounded queue
              (or an error reply at once)
    batches   queue -> batch -> decode (decode thread) -> classify (inference thread)
              -> replies (a bundle's answers of one batch in one message)
    status    retained load report every ``status_interval_s``

The event loop only moves bytes. Decoding runs in its own thread one batch ahead of
inference, and inference in one dedicated thread, so torch never competes with itself
and the loop never blocks.

Deadlines are checked three times: on arrival, when a batch is formed, and in both
cases against the worker's own estimate of when the answer would be ready (recent
per-image compute time x the work ahead of the frame). A frame that would miss its
deadline is answered ``expired`` instead of computed: the edge has fallen back by then.

Shutdown: when ``stop`` is set the worker unsubscribes (the shared subscription hands
new frames to the other workers), answers ``shutting_down`` to anything still arriving,
finishes the queue for up to ``drain_timeout_s``, publishes its offline status and
disconnects. Cancellation skips the drain: queued frames are answered at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import aiomqtt
import torch
from aiomqtt import Will

from cloud_worker.batching import next_batch
from cloud_worker.metrics import WorkerMetrics
from cloud_worker.processing import DecodedBatch, Pending, classify_batch, decode_batch
from cloud_worker.replying import ReplyPublisher
from cloud_worker.stats import WorkerStats
from pipeline.allocator import keep_freed_memory
from pipeline.config import Config
from pipeline.cpus import parse_cpus, pin_process
from pipeline.errors import ProtocolError, TransportError
from pipeline.heap import freeze_heap
from pipeline.inference import Classifier
from pipeline.looplag import watch_loop_lag
from pipeline.mqtt import (
    DEFAULT_INCOMING_QUEUE,
    connect_with_retry,
    make_client,
    payload_bytes,
    translate_mqtt_errors,
)
from pipeline.protocol import (
    ErrorCode,
    ErrorReply,
    FrameRequest,
    Reply,
    Result,
    WorkerStatus,
    decode_frames,
)
from pipeline.tasks import cancel_and_wait
from pipeline.topics import ReplyTarget, reply_target

__all__ = ["CloudWorker"]

logger = logging.getLogger(__name__)

_GOODBYE_TIMEOUT_S = 3.0


class CloudWorker:
    """One worker process's service. ``run()`` until ``stop`` is set or it is cancelled."""

    def __init__(self, config: Config, *, classifier: Classifier | None = None) -> None:
        self._config = config
        self._cfg = config.worker
        self._topics = config.topics
        self._classifier = classifier
        self._queue: asyncio.Queue[Pending] = asyncio.Queue(maxsize=self._cfg.max_queue)
        self._draining = False
        self._connected_once = False
        self._held: dict[int, list[Pending]] = {}  # batches taken, not yet computing
        self._computing = 0  # frames in the inference thread now
        self.stats = WorkerStats()
        self.metrics = WorkerMetrics(self._cfg.worker_id, self._served_model())
        self._replies = ReplyPublisher(self._cfg.worker_id, self._cfg.qos, self.metrics)
        self.metrics_port: int | None = None  # bound port once the endpoint is up
        self.bad_messages = 0

    @property
    def worker_id(self) -> str:
        return self._cfg.worker_id

    def _served_model(self) -> str:
        return self._cfg.model if self._classifier is None else self._classifier.spec.name

    async def run(
        self, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None
    ) -> None:
        """Serve until ``stop`` is set (drain, then return) or cancelled (no drain).

        ``ready`` is set once subscribed and announced.
        """
        if self._cfg.cpus is not None:
            pin_process(parse_cpus(self._cfg.cpus))  # process-wide, like the setting
        if self._cfg.threads is not None:
            torch.set_num_threads(self._cfg.threads)  # process-wide, like the setting
        if self._cfg.keep_freed_memory:
            keep_freed_memory()  # process-wide, like the setting; before the model loads
        if self._classifier is None:
            # Building a model reads weights from disk: keep it off the loop.
            self._classifier = await asyncio.to_thread(
                partial(
                    Classifier.by_name,
                    self._cfg.model,
                    self._cfg.device,
                    half=self._cfg.half,
                    frozen=self._cfg.frozen,
                )
            )
        classifier = self._classifier
        if self._cfg.freeze_heap:
            # Before serving: the collection it runs first is the pause it saves later.
            frozen = freeze_heap()
            logger.debug("worker %s: froze %d start-up objects", self.worker_id, frozen)
        if self._cfg.metrics_port is not None:
            self.metrics_port = self.metrics.serve(self._cfg.metrics_port, self._cfg.metrics_addr)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.worker_id}-infer")
        self._draining = False
        stop = stop or asyncio.Event()
        # The first connection must come within connect_timeout_s (a wrong address is a
        # clear error); after that a lost broker is waited for as long as it takes.
        give_up_after_s = self._config.broker.connect_timeout_s
        lag = asyncio.create_task(
            watch_loop_lag(self.metrics.loop_lag.observe), name=f"{self.worker_id}-loop-lag"
        )
        try:
            while True:
                try:
                    await self._session(classifier, executor, stop, ready, give_up_after_s)
                except (aiomqtt.MqttError, TransportError) as exc:
                    if not self._connected_once:
                        raise
                    give_up_after_s = math.inf
                    logger.warning(
                        "worker %s: lost the broker (%s); reconnecting", self.worker_id, exc
                    )
                else:
                    return
        finally:
            await cancel_and_wait([lag])
            executor.shutdown(wait=False, cancel_futures=True)
            await asyncio.to_thread(self.metrics.close)

    async def _session(
        self,
        classifier: Classifier,
        executor: ThreadPoolExecutor,
        stop: asyncio.Event,
        ready: asyncio.Event | None,
        give_up_after_s: float,
    ) -> None:
        """One broker connection: subscribe, announce, serve until stopped or lost."""
        client = make_client(
            self._config.broker,
            client_id=self.worker_id,
            # A burst from many edges lands here before ``_receive`` can answer 'busy';
            # frames aiomqtt drops are lost silently (the edge falls back at its deadline).
            max_queued_incoming=max(DEFAULT_INCOMING_QUEUE, 4 * self._cfg.max_queue),
            will=Will(
                self._topics.worker_status(self.worker_id),
                self._status(online=False).to_bytes(),
                qos=1,
                retain=True,
            ),
        )
        async with connect_with_retry(
            client, what=f"worker {self.worker_id}", give_up_after_s=give_up_after_s
        ):
            with translate_mqtt_errors(f"worker {self.worker_id}"):
                await client.subscribe(self._subscription(), qos=self._cfg.qos)
                await self._publish_status(client, online=True)
            logger.info(
                "worker %s serving %s (%s%s) on %s",
                self.worker_id,
                classifier.spec.name,
                classifier.device,
                ", float16" if classifier.half else "",
                self._subscription(),
            )
            self._connected_once = True
            if ready is not None:
                ready.set()
            try:
                await self._serve(client, classifier, executor, stop)
            finally:
                # Runs on cancellation too: tell queued edges to fall back now rather
                # than at their deadline, and mark ourselves offline (not via the will,
                # which the broker only sends on an unclean disconnect).
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                    async with asyncio.timeout(_GOODBYE_TIMEOUT_S):
                        await self._goodbye(client)

    async def _serve(
        self,
        client: aiomqtt.Client,
        classifier: Classifier,
        executor: ThreadPoolExecutor,
        stop: asyncio.Event,
    ) -> None:
        tasks = [
            asyncio.create_task(self._receive(client), name="worker-receive"),
            asyncio.create_task(self._batches(client, classifier, executor), name="worker-batches"),
            asyncio.create_task(self._status_loop(client), name="worker-status"),
        ]
        stopping = asyncio.create_task(stop.wait(), name="worker-stop")
        try:
            done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopping:
                    task.result()  # a service task never ends on its own unless it failed
            await self._drain(client)
        finally:
            await cancel_and_wait([stopping, *tasks])
            for task in tasks:
                if not task.cancelled() and (failure := task.exception()) is not None:
                    logger.error(
                        "worker %s: %s failed: %r", self.worker_id, task.get_name(), failure
                    )

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Stop taking frames and finish the queue, for at most ``drain_timeout_s``."""
        self._draining = True
        queued = self._queue.qsize()
        logger.info("worker %s stopping: draining %d queued frames", self.worker_id, queued)
        with contextlib.suppress(aiomqtt.MqttError):
            await client.unsubscribe(self._subscription())
        try:
            async with asyncio.timeout(self._cfg.drain_timeout_s):
                await self._queue.join()
        except TimeoutError:
            logger.warning(
                "worker %s: %d frames still queued after %.1f s; answering shutting_down",
                self.worker_id,
                self._queue.qsize(),
                self._cfg.drain_timeout_s,
            )

    def _subscription(self) -> str:
        if self._cfg.shared_subscription:
            return self._topics.shared_frames(self._cfg.group)
        return self._topics.frames_filter

    def _waiting(self) -> int:
        """Frames here and not yet computing: queued, or batched and decoding."""
        return self._queue.qsize() + sum(len(batch) for batch in self._held.values())

    def _status(self, *, online: bool) -> WorkerStatus:
        classifier = self._classifier
        return WorkerStatus(
            worker_id=self.worker_id,
            online=online,
            ts=time.time(),
            device=str(classifier.device) if classifier else self._cfg.device,
            models=(self._served_model(),),
            queue_depth=self._waiting(),
            queue_capacity=self._cfg.max_queue,
            mean_batch_size=self.stats.mean_batch_size,
            latency_ms_per_image=self.stats.latency_ms_per_image,
            throughput_fps=self.stats.throughput_fps(),
            frames_done=self.stats.frames_done,
            frames_rejected=self.stats.frames_rejected,
        )

    async def _publish_status(self, client: aiomqtt.Client, *, online: bool) -> None:
        self.metrics.queue_depth.set(self._waiting())
        await client.publish(
            self._topics.worker_status(self.worker_id),
            self._status(online=online).to_bytes(),
            qos=1,
            retain=True,
        )

    async def _status_loop(self, client: aiomqtt.Client) -> None:
        while True:
            await asyncio.sleep(self._cfg.status_interval_s)
            await self._publish_status(client, online=True)

    def _refusal(self, code: ErrorCode, message: str, frame_id: str | None) -> ErrorReply:
        self.stats.record_rejected()
        return ErrorReply(
            frame_id=frame_id, worker_id=self.worker_id, code=code, message=message[:1000]
        )

    async def _refuse(
        self,
        client: aiomqtt.Client,
        target: ReplyTarget | None,
        code: ErrorCode,
        message: str,
        frame_id: str | None,
    ) -> None:
        reply = self._refusal(code, message, frame_id)
        if target is None:
            self.metrics.error(code)
            return
        await self._replies.reply(client, target, reply)

    def _bad_message(self, topic: str, exc: ProtocolError) -> ErrorReply:
        self.bad_messages += 1
        self.metrics.bad_message()
        logger.warning(
            "worker %s: bad message on %s (%s): %s", self.worker_id, topic, exc.reason, exc
        )
        return self._refusal(ErrorCode.BAD_REQUEST, str(exc), exc.frame_id)

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            target = reply_target(self._topics, topic, message.properties)
            try:
                arrived = decode_frames(payload_bytes(message))
            except ProtocolError as exc:
                refusals = [self._bad_message(topic, exc)]
                bundled = False
            else:
                bundled = arrived.bundled
                refusals = [self._bad_message(topic, exc) for exc in arrived.errors]
                for request in arrived.requests:
                    refusal = self._admit(topic, target, request, bundled=bundled)
                    if refusal is not None:
                        refusals.append(refusal)
            if target is None:
                if refusals:
                    logger.warning(
                        "worker %s: a message on %s has nowhere to reply", self.worker_id, topic
                    )
                for refusal in refusals:
                    self.metrics.error(refusal.code)
                continue
            await self._replies.deliver(
                client, [(target, refusal, bundled) for refusal in refusals]
            )

    def _admit(
        self, topic: str, target: ReplyTarget | None, request: FrameRequest, *, bundled: bool
    ) -> ErrorReply | None:
        """Queue ``request``, or return the refusal to answer it with."""
        fid = request.frame_id
        if target is None:
            return self._refusal(ErrorCode.BAD_REQUEST, "nowhere to reply", fid)
        if self._draining:
            return self._refusal(ErrorCode.SHUTTING_DOWN, "worker is shutting down", fid)
        topic_edge = self._topics.edge_of_frames_topic(topic)
        if topic_edge != request.edge_id:
            return self._refusal(
                ErrorCode.BAD_REQUEST,
                f"edge_id {request.edge_id!r} does not match the topic's {topic_edge!r}",
                fid,
            )
        served = self._served_model()
        if request.model != served:
            return self._refusal(
                ErrorCode.UNKNOWN_MODEL,
                f"this worker serves {served!r}, not {request.model!r}",
                fid,
            )
        now = time.time()
        if request.deadline_ts <= now:
            return self._refusal(ErrorCode.EXPIRED, "deadline passed on arrival", fid)
        # The frames ahead of this one, and this one, at the recent per-image rate.
        ready_in_ms = self.stats.estimated_ms(self._waiting() + self._computing + 1)
        if request.deadline_ts <= now + ready_in_ms / 1000:
            return self._refusal(
                ErrorCode.EXPIRED,
                f"the deadline is {(request.deadline_ts - now) * 1000:.0f} ms away and "
                f"the work queued ahead needs ~{ready_in_ms:.0f} ms",
                fid,
            )
        try:
            self._queue.put_nowait(Pending(request, target, time.monotonic(), bundled))
        except asyncio.QueueFull:
            return self._refusal(ErrorCode.BUSY, f"queue full ({self._cfg.max_queue})", fid)
        return None

    async def _batches(
        self, client: aiomqtt.Client, classifier: Classifier, executor: ThreadPoolExecutor
    ) -> None:
        """Two stages, one batch apart: while the inference thread classifies a batch,
        a decode thread decodes the next (OpenCV releases the GIL), so decoding costs
        the inference thread nothing. At most one decoded batch waits for it."""
        decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.worker_id}-decode")
        decoded: asyncio.Queue[DecodedBatch] = asyncio.Queue(maxsize=1)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._decode_stage(client, classifier, decoder, decoded))
                group.create_task(self._classify_stage(client, classifier, executor, decoded))
        finally:
            decoder.shutdown(wait=False, cancel_futures=True)

    async def _decode_stage(
        self,
        client: aiomqtt.Client,
        classifier: Classifier,
        decoder: ThreadPoolExecutor,
        out: asyncio.Queue[DecodedBatch],
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await next_batch(
                self._queue, max_batch=self._cfg.max_batch, max_wait_s=self._cfg.max_wait_ms / 1000
            )
            live = await self._drop_expired(client, batch)
            for _ in range(len(batch) - len(live)):
                self._queue.task_done()
            if not live:
                continue
            # Taken from the queue but not yet computing: answered by _goodbye if the
            # worker is cancelled before the inference thread gets them.
            self._held[id(live)] = live
            await out.put(
                await loop.run_in_executor(decoder, decode_batch, live, classifier, self.worker_id)
            )

    async def _classify_stage(
        self,
        client: aiomqtt.Client,
        classifier: Classifier,
        executor: ThreadPoolExecutor,
        decoded_batches: asyncio.Queue[DecodedBatch],
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            decoded = await decoded_batches.get()
            self._held.pop(id(decoded.batch), None)
            try:
                await self._compute(client, classifier, executor, decoded, loop)
            finally:
                for _ in decoded.batch:
                    self._queue.task_done()

    async def _compute(
        self,
        client: aiomqtt.Client,
        classifier: Classifier,
        executor: ThreadPoolExecutor,
        decoded: DecodedBatch,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        live = decoded.batch
        started = time.monotonic()
        self._computing = len(live)
        future = loop.run_in_executor(
            executor, _classify_slowed, decoded, classifier, self.worker_id, self._cfg.slowdown
        )
        try:
            replies = await asyncio.shield(future)
        except asyncio.CancelledError:
            # Shutting down mid-batch: the thread finishes anyway, so deliver its
            # answers instead of letting those edges wait for their deadline.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_GOODBYE_TIMEOUT_S):
                    await self._send_replies(client, live, await future)
            raise
        finally:
            self._computing = 0
        compute_s = time.monotonic() - started
        computed = sum(1 for _, reply in replies if isinstance(reply, Result))
        if computed:
            self.stats.record_batch(len(live), compute_s * 1000)
            self.metrics.batch(
                computed, compute_s, [decoded.started - p.received_mono for p in live]
            )
        await self._send_replies(client, live, replies)

    async def _send_replies(
        self,
        client: aiomqtt.Client,
        live: list[Pending],
        replies: list[tuple[ReplyTarget, Reply]],
    ) -> None:
        # Hand the whole batch to the broker at once: awaiting each QoS 1 PUBACK in turn
        # caps a worker at a few hundred frames/s.
        await self._replies.deliver(
            client,
            [
                (target, reply, pending.bundled)
                for pending, (target, reply) in zip(live, replies, strict=True)
            ],
        )

    async def _drop_expired(self, client: aiomqtt.Client, batch: list[Pending]) -> list[Pending]:
        """The requests of ``batch`` that can still be answered in time; the rest are
        answered ``expired`` without being computed."""
        now = time.time()
        # This batch computes after the one in the inference thread now.
        finish = now + self.stats.estimated_ms(len(batch) + self._computing) / 1000
        live = [p for p in batch if p.request.deadline_ts > finish]
        expired = [
            (
                p.target,
                self._refusal(
                    ErrorCode.EXPIRED,
                    "deadline passed in the queue"
                    if p.request.deadline_ts <= now
                    else "deadline would pass before this batch finishes",
                    p.request.frame_id,
                ),
                p.bundled,
            )
            for p in batch
            if p.request.deadline_ts <= finish
        ]
        if expired:
            await self._replies.deliver(client, expired)
        return live

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        held = [p for batch in self._held.values() for p in batch]
        self._held.clear()
        for pending in held:
            await self._refuse(
                client,
                pending.target,
                ErrorCode.SHUTTING_DOWN,
                "worker is shutting down",
                pending.request.frame_id,
            )
        while True:
            try:
                pending = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            self._queue.task_done()
            await self._refuse(
                client,
                pending.target,
                ErrorCode.SHUTTING_DOWN,
                "worker is shutting down",
                pending.request.frame_id,
            )
        await self._replies.flush()
        await self._publish_status(client, online=False)
        logger.info("worker %s offline", self.worker_id)


def _classify_slowed(
    decoded: DecodedBatch, classifier: Classifier, worker_id: str, slowdown: float
) -> list[tuple[ReplyTarget, Reply]]:
    """``classify_batch``, then hold the inference thread ``slowdown - 1`` times as long
    again (``worker.slowdown``): the whole compute path, timings and queue, slows alike."""
    started = time.monotonic()
    replies = classify_batch(decoded, classifier, worker_id)
    if slowdown > 1.0:
        time.sleep((slowdown - 1.0) * (time.monotonic() - started))
    return replies
