"""The cloud worker service: frames in over a shared subscription, answers out.

Tasks (one TaskGroup, cancelled together on shutdown)::

    receive   MQTT messages -> validate -> bounded queue (or an error reply at once)
    batches   queue -> dynamic batch -> decode + classify in the inference thread -> replies
    status    retained load report every ``status_interval_s``

The event loop only moves bytes; JPEG decoding and inference run in one dedicated
thread, so torch never competes with itself and the loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import aiomqtt
from aiomqtt import Will

from cloud_worker.batching import next_batch
from cloud_worker.processing import Pending, process_batch
from cloud_worker.stats import WorkerStats
from pipeline.config import Config
from pipeline.errors import ProtocolError
from pipeline.inference import Classifier
from pipeline.mqtt import connect_with_retry, make_client, payload_bytes, translate_mqtt_errors
from pipeline.protocol import ErrorCode, ErrorReply, FrameRequest, Reply, WorkerStatus
from pipeline.topics import ReplyTarget, reply_target

__all__ = ["CloudWorker"]

logger = logging.getLogger(__name__)

_GOODBYE_TIMEOUT_S = 3.0


class CloudWorker:
    """One worker process's service. ``run()`` until cancelled; safe to run again."""

    def __init__(self, config: Config, *, classifier: Classifier | None = None) -> None:
        self._config = config
        self._cfg = config.worker
        self._topics = config.topics
        self._classifier = classifier
        self._queue: asyncio.Queue[Pending] = asyncio.Queue(maxsize=self._cfg.max_queue)
        self.stats = WorkerStats()
        self.bad_messages = 0

    @property
    def worker_id(self) -> str:
        return self._cfg.worker_id

    async def run(self, *, ready: asyncio.Event | None = None) -> None:
        """Serve until cancelled; ``ready`` is set once subscribed and announced."""
        if self._classifier is None:
            # Building a model reads weights from disk: keep it off the loop.
            self._classifier = await asyncio.to_thread(
                Classifier.by_name, self._cfg.model, self._cfg.device
            )
        classifier = self._classifier
        client = make_client(
            self._config.broker,
            client_id=self.worker_id,
            will=Will(
                self._topics.worker_status(self.worker_id),
                self._status(online=False).to_bytes(),
                qos=1,
                retain=True,
            ),
        )
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.worker_id}-infer")
        try:
            async with connect_with_retry(
                client,
                what=f"worker {self.worker_id}",
                give_up_after_s=self._config.broker.connect_timeout_s,
            ):
                with translate_mqtt_errors(f"worker {self.worker_id}"):
                    await client.subscribe(self._subscription(), qos=self._cfg.qos)
                    await self._publish_status(client, online=True)
                logger.info(
                    "worker %s serving %s (%s) on %s",
                    self.worker_id,
                    classifier.spec.name,
                    classifier.device,
                    self._subscription(),
                )
                if ready is not None:
                    ready.set()
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._receive(client), name="worker-receive")
                        tg.create_task(
                            self._batches(client, classifier, executor), name="worker-batches"
                        )
                        tg.create_task(self._status_loop(client), name="worker-status")
                finally:
                    # Runs on cancellation too: tell queued edges to fall back now rather
                    # than at their deadline, and mark ourselves offline (not via the will,
                    # which the broker only sends on an unclean disconnect).
                    with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                        async with asyncio.timeout(_GOODBYE_TIMEOUT_S):
                            await self._goodbye(client)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    def _subscription(self) -> str:
        if self._cfg.shared_subscription:
            return self._topics.shared_frames(self._cfg.group)
        return self._topics.frames_filter

    def _status(self, *, online: bool) -> WorkerStatus:
        classifier = self._classifier
        return WorkerStatus(
            worker_id=self.worker_id,
            online=online,
            ts=time.time(),
            device=str(classifier.device) if classifier else self._cfg.device,
            models=(classifier.spec.name,) if classifier else (self._cfg.model,),
            queue_depth=self._queue.qsize(),
            queue_capacity=self._cfg.max_queue,
            mean_batch_size=self.stats.mean_batch_size,
            latency_ms_per_image=self.stats.latency_ms_per_image,
            throughput_fps=self.stats.throughput_fps(),
            frames_done=self.stats.frames_done,
            frames_rejected=self.stats.frames_rejected,
        )

    async def _publish_status(self, client: aiomqtt.Client, *, online: bool) -> None:
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

    async def _reply(self, client: aiomqtt.Client, target: ReplyTarget, reply: Reply) -> None:
        await client.publish(
            target.topic, reply.to_bytes(), qos=self._cfg.qos, properties=target.properties
        )

    async def _refuse(
        self,
        client: aiomqtt.Client,
        target: ReplyTarget | None,
        code: ErrorCode,
        message: str,
        frame_id: str | None,
    ) -> None:
        self.stats.record_rejected()
        if target is None:
            return
        reply = ErrorReply(
            frame_id=frame_id, worker_id=self.worker_id, code=code, message=message[:1000]
        )
        await self._reply(client, target, reply)

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            target = reply_target(self._topics, topic, message.properties)
            try:
                request = FrameRequest.from_bytes(payload_bytes(message))
            except ProtocolError as exc:
                self.bad_messages += 1
                logger.warning(
                    "worker %s: bad message on %s (%s): %s", self.worker_id, topic, exc.reason, exc
                )
                await self._refuse(client, target, ErrorCode.BAD_REQUEST, str(exc), exc.frame_id)
                continue
            await self._admit(client, topic, target, request)

    async def _admit(
        self,
        client: aiomqtt.Client,
        topic: str,
        target: ReplyTarget | None,
        request: FrameRequest,
    ) -> None:
        fid = request.frame_id
        if target is None:
            logger.warning(
                "worker %s: frame %s on %s has nowhere to reply", self.worker_id, fid, topic
            )
            return
        topic_edge = self._topics.edge_of_frames_topic(topic)
        if topic_edge != request.edge_id:
            await self._refuse(
                client,
                target,
                ErrorCode.BAD_REQUEST,
                f"edge_id {request.edge_id!r} does not match the topic's {topic_edge!r}",
                fid,
            )
            return
        served = self._cfg.model if self._classifier is None else self._classifier.spec.name
        if request.model != served:
            await self._refuse(
                client,
                target,
                ErrorCode.UNKNOWN_MODEL,
                f"this worker serves {served!r}, not {request.model!r}",
                fid,
            )
            return
        if request.deadline_ts <= time.time():
            await self._refuse(client, target, ErrorCode.EXPIRED, "deadline passed on arrival", fid)
            return
        try:
            self._queue.put_nowait(Pending(request, target, time.monotonic()))
        except asyncio.QueueFull:
            await self._refuse(
                client, target, ErrorCode.BUSY, f"queue full ({self._cfg.max_queue})", fid
            )

    async def _batches(
        self, client: aiomqtt.Client, classifier: Classifier, executor: ThreadPoolExecutor
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await next_batch(
                self._queue, max_batch=self._cfg.max_batch, max_wait_s=self._cfg.max_wait_ms / 1000
            )
            live = await self._drop_expired(client, batch)
            if not live:
                continue
            future = loop.run_in_executor(executor, process_batch, live, classifier, self.worker_id)
            try:
                replies = await asyncio.shield(future)
            except asyncio.CancelledError:
                # Shutting down mid-batch: the thread finishes anyway, so deliver its
                # answers instead of letting those edges wait for their deadline.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(_GOODBYE_TIMEOUT_S):
                        await self._send_replies(client, await future)
                raise
            await self._send_replies(client, replies)

    async def _send_replies(
        self, client: aiomqtt.Client, replies: list[tuple[ReplyTarget, Reply]]
    ) -> None:
        results = [r for _, r in replies if not isinstance(r, ErrorReply)]
        if results:
            first = results[0]
            self.stats.record_batch(len(results), first.inference_ms)
        # Publish the whole batch concurrently: awaiting each QoS 1 PUBACK in turn caps a
        # worker at a few hundred frames/s.
        await asyncio.gather(*(self._reply(client, target, reply) for target, reply in replies))

    async def _drop_expired(self, client: aiomqtt.Client, batch: list[Pending]) -> list[Pending]:
        now = time.time()
        live = [p for p in batch if p.request.deadline_ts > now]
        for p in batch:
            if p.request.deadline_ts <= now:
                await self._refuse(
                    client,
                    p.target,
                    ErrorCode.EXPIRED,
                    "deadline passed in queue",
                    p.request.frame_id,
                )
        return live

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        while True:
            try:
                pending = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            await self._refuse(
                client,
                pending.target,
                ErrorCode.SHUTTING_DOWN,
                "worker is shutting down",
                pending.request.frame_id,
            )
        await self._publish_status(client, online=False)
        logger.info("worker %s offline", self.worker_id)
