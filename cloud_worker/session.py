"""One broker connection of a worker: subscribe, announce, serve, drain, say goodbye.

Tasks (cancelled together when the session ends)::

    receive   MQTT messages (one frame or a bundle) -> validate each -> admission, for
              the message at once -> the backlog's bounded queue, as one unit (or an
              error reply at once)
    batches   the batch stages (:mod:`cloud_worker.stages`)
    status    the retained load report every ``status_interval_s``

When ``stop`` is set the session unsubscribes (the shared subscription hands new frames
to the other workers), answers ``shutting_down`` to anything still arriving, and
finishes the queue for up to ``drain_timeout_s``. On its way out, cancelled or not, it
answers ``shutting_down`` to what it still holds and publishes its offline status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import aiomqtt

from cloud_worker.admission import Admission
from cloud_worker.backlog import Backlog
from cloud_worker.metrics import WorkerMetrics
from cloud_worker.processing import Packing, Pending, ServedModel
from cloud_worker.replying import ReplyPublisher
from cloud_worker.stages import GOODBYE_TIMEOUT_S, BatchStages, refusal
from cloud_worker.stats import WorkerStats
from pipeline.config import WorkerConfig
from pipeline.errors import ProtocolError, TransportError
from pipeline.mqtt import Client, acknowledge, payload_bytes
from pipeline.protocol import ErrorCode, ErrorReply, FrameRequest, decode_frames
from pipeline.ratelog import RateLimitedLog
from pipeline.service import RetainedStatus
from pipeline.tasks import cancel_and_wait
from pipeline.topics import ReplyTarget, Topics, reply_target

__all__ = ["WorkerParts", "WorkerSession"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerParts:
    """What a worker's sessions share for the worker's whole life."""

    cfg: WorkerConfig
    topics: Topics
    subscription: str
    classifier: ServedModel
    executor: ThreadPoolExecutor  # the one inference thread
    backlog: Backlog
    admission: Admission
    replies: ReplyPublisher
    stats: WorkerStats
    metrics: WorkerMetrics
    status: RetainedStatus
    on_bad_message: Callable[[], None]  # counts malformed messages across sessions
    refusals: RateLimitedLog  # malformed and unanswerable messages, summarised


class WorkerSession:
    def __init__(self, parts: WorkerParts, client: aiomqtt.Client) -> None:
        self._parts = parts
        self._cfg = parts.cfg
        self._client = client
        self.draining = False
        if isinstance(client, Client):
            client.on_overflow = self.refuse_at_once

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set (then drain) or the connection is lost."""
        tasks = [
            asyncio.create_task(self._receive(), name="worker-receive"),
            asyncio.create_task(self._stages().run(), name="worker-batches"),
            asyncio.create_task(
                self._parts.status.every_interval(self.publish_status), name="worker-status"
            ),
        ]
        stopping = asyncio.create_task(stop.wait(), name="worker-stop")
        try:
            done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopping:
                    task.result()  # a service task never ends on its own unless it failed
            await self._drain()
        finally:
            await cancel_and_wait([stopping, *tasks])
            for task in tasks:
                if not task.cancelled() and (failure := task.exception()) is not None:
                    # A lost connection is the link's to report (and reconnect); anything
                    # else is a bug worth a loud line.
                    lost = isinstance(failure, aiomqtt.MqttError | TransportError)
                    logger.log(
                        logging.DEBUG if lost else logging.ERROR,
                        "worker %s: %s failed: %r",
                        self._cfg.worker_id,
                        task.get_name(),
                        failure,
                    )

    def _stages(self) -> BatchStages:
        p = self._parts
        return BatchStages(
            cfg=p.cfg,
            client=self._client,
            classifier=p.classifier,
            executor=p.executor,
            backlog=p.backlog,
            admission=p.admission,
            replies=p.replies,
            stats=p.stats,
            metrics=p.metrics,
        )

    async def publish_status(self, *, online: bool = True) -> None:
        self._parts.refusals.flush_if_due()  # a burst's summary, even once it has ended
        self._parts.metrics.queue_depth.set(self._parts.backlog.waiting())
        await self._parts.status.publish(self._client, online=online)

    async def _drain(self) -> None:
        """Stop taking frames and finish the queue, for at most ``drain_timeout_s``."""
        self.draining = True
        backlog = self._parts.backlog
        logger.info(
            "worker %s stopping: draining %d queued frames", self._cfg.worker_id, backlog.queued
        )
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.unsubscribe(self._parts.subscription)
        try:
            async with asyncio.timeout(self._cfg.drain_timeout_s):
                await backlog.queue.join()
        except TimeoutError:
            logger.warning(
                "worker %s: %d frames still queued after %.1f s; answering shutting_down",
                self._cfg.worker_id,
                backlog.waiting(),
                self._cfg.drain_timeout_s,
            )

    async def goodbye(self) -> None:
        """Answer what is held with ``shutting_down`` and go offline, within a bound: it
        runs on cancellation too, so edges fall back now rather than at their deadline,
        and the offline status goes out (the will is only sent on an unclean exit)."""
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(GOODBYE_TIMEOUT_S):
                for pending in self._parts.backlog.take_all():
                    await self._refuse_pending(pending)
                await self._parts.replies.flush()
                await self.publish_status(online=False)
                self._parts.refusals.flush()
                logger.info("worker %s offline", self._cfg.worker_id)

    async def _refuse_pending(self, pending: Pending) -> None:
        reply = self._refusal(
            ErrorCode.SHUTTING_DOWN, "worker is shutting down", pending.request.frame_id
        )
        await self._parts.replies.reply(self._client, pending.target, reply)

    def _refusal(self, code: ErrorCode, message: str, frame_id: str | None) -> ErrorReply:
        return refusal(self._parts.stats, self._cfg.worker_id, code, message, frame_id)

    def _bad_message(self, topic: str, exc: ProtocolError) -> ErrorReply:
        self._parts.on_bad_message()
        self._parts.metrics.bad_message()
        self._parts.refusals.note(f"bad message ({exc.reason})", f"on {topic}: {exc}")
        return self._refusal(ErrorCode.BAD_REQUEST, str(exc), exc.frame_id)

    async def _receive(self) -> None:
        async for message in self._client.messages:
            await self._take(message)
            # Only now, with each request queued, answered or refused, does the broker
            # hear that this worker has it (pipeline/mqtt.py: manual acknowledgement).
            acknowledge(self._client, message)

    async def _take(self, message: aiomqtt.Message) -> None:
        """Queue the requests of ``message`` (as units of at most ``max_batch``) or
        refuse them, and send the refusals."""
        target, requests, refusals, packing = self._open(message)
        if requests:
            refusals += self._admit(message.topic.value, target, requests, packing)
        if self._answerable(message, target, refusals):
            assert target is not None
            await self._parts.replies.deliver(
                self._client, [(target, refused, packing) for refused in refusals]
            )

    def refuse_at_once(self, message: aiomqtt.Message) -> None:
        """The client's incoming queue is full (a burst the receive loop is behind on):
        refuse ``message`` now, from the client's callback, with ``busy``. Its sender
        learns at once, and the broker hears it was taken care of only after that."""
        self._parts.metrics.receive_overflow()
        target, requests, refusals, packing = self._open(message)
        refusals += [
            self._refusal(ErrorCode.BUSY, "worker overloaded: receive queue full", r.frame_id)
            for r in requests
        ]
        if requests:
            self._parts.refusals.note("busy: receive queue full", f"on {message.topic.value}")
        if self._answerable(message, target, refusals):
            assert target is not None
            self._parts.replies.deliver_now(
                self._client, [(target, refused, packing) for refused in refusals]
            )

    def _open(
        self, message: aiomqtt.Message
    ) -> tuple[ReplyTarget | None, list[FrameRequest], list[ErrorReply], Packing]:
        """Where to reply, the requests a message holds, refusals for what is malformed
        in it, and how its answers travel."""
        topic = message.topic.value
        target = reply_target(self._parts.topics, topic, message.properties)
        try:
            arrived = decode_frames(payload_bytes(message))
        except ProtocolError as exc:
            return target, [], [self._bad_message(topic, exc)], Packing.ALONE
        refusals = [self._bad_message(topic, exc) for exc in arrived.errors]
        if not arrived.bundled:
            packing = Packing.ALONE
        else:
            packing = Packing.COLUMNS if arrived.columns else Packing.MEMBERS
        return target, arrived.requests, refusals, packing

    def _answerable(
        self, message: aiomqtt.Message, target: ReplyTarget | None, refusals: list[ErrorReply]
    ) -> bool:
        """Whether the refusals can be sent; counted where they cannot."""
        if target is not None:
            return bool(refusals)
        if refusals:
            where = f"a message on {message.topic.value}"
            self._parts.refusals.note("refused with nowhere to reply", where)
        for refused in refusals:
            self._parts.metrics.error(refused.code)
        return False

    def _admit(
        self,
        topic: str,
        target: ReplyTarget | None,
        requests: list[FrameRequest],
        packing: Packing,
    ) -> list[ErrorReply]:
        """Queue what admission takes of ``requests`` (one message's), in units of at
        most ``max_batch``; return the refusals for the rest."""
        p = self._parts
        verdicts = p.admission.check_all(
            topic, target, requests, draining=self.draining, frames_ahead=p.backlog.ahead()
        )
        refusals: list[ErrorReply] = []
        taken: list[Pending] = []
        room = p.backlog.room()
        arrived = time.monotonic()
        for request, refused in zip(requests, verdicts, strict=True):
            if refused is not None:
                refusals.append(self._refusal(refused.code, refused.message, request.frame_id))
            elif len(taken) >= room:
                message = f"queue full ({self._cfg.max_queue})"
                refusals.append(self._refusal(ErrorCode.BUSY, message, request.frame_id))
            else:
                assert target is not None  # admission refuses a request with nowhere to reply
                taken.append(Pending(request, target, arrived, packing))
        step = self._cfg.max_batch
        for start in range(0, len(taken), step):
            p.backlog.put(taken[start : start + step])
        return refusals
