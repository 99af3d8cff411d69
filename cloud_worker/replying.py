"""Publishing a worker's answers without waiting for them.

Replies are sent in the background so that neither the receive loop (busy/expired
refusals under overload) nor the batch loop waits a broker round trip per message:
awaiting each QoS 1 PUBACK in turn caps a worker at a few hundred frames/s. Answers to
frames that came in a bundle go back as one message per reply topic (and echoed
correlation data) and batch: results as one :class:`ResultColumns` where the bundle
asked for columns, everything else as members of a :class:`ReplyBundle`. The rest go
one message each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import aiomqtt

from cloud_worker.metrics import WorkerMetrics
from cloud_worker.processing import Packing, WorkerReply
from pipeline.mqtt import Client
from pipeline.protocol import (
    MAX_BUNDLE_FRAMES,
    ErrorReply,
    Reply,
    ReplyBundle,
    ResultColumns,
    ResultRow,
    frames_per_message,
)
from pipeline.topics import ReplyTarget

__all__ = ["MAX_UNACKED_REPLIES", "Answer", "ReplyPublisher"]

logger = logging.getLogger(__name__)

# Replies published but not yet acknowledged by the broker; past this many the
# publisher waits (bounded memory when the broker is slow).
MAX_UNACKED_REPLIES = 1024

Answer = tuple[ReplyTarget, WorkerReply, Packing]  # where, what, and how it travels


class ReplyPublisher:
    """One worker's outgoing answers: counted in its metrics, published in the background."""

    def __init__(self, worker_id: str, qos: int, metrics: WorkerMetrics) -> None:
        self._worker_id = worker_id
        self._qos = qos
        self._metrics = metrics
        self._sending: set[asyncio.Future[None]] = set()

    async def reply(self, client: aiomqtt.Client, target: ReplyTarget, reply: Reply) -> None:
        """Publish ``reply`` alone; waits only while too many are unacknowledged."""
        self._count((reply,))
        await self._publish(client, target, reply.to_bytes())

    async def deliver(self, client: aiomqtt.Client, answers: Sequence[Answer]) -> None:
        """Publish answers: the bundleable ones as one bundle per reply target, the rest
        one message each."""
        for target, data in self._messages(answers):
            await self._publish(client, target, data)

    def deliver_now(self, client: aiomqtt.Client, answers: Sequence[Answer]) -> None:
        """:meth:`deliver` from synchronous code (a full receive queue's refusals, from
        the MQTT client's callback): published in the background at once, without
        waiting for earlier replies' acknowledgements. Refusals are small."""
        for target, data in self._messages(answers):
            self._publish_now(client, target, data)

    def _messages(self, answers: Sequence[Answer]) -> list[tuple[ReplyTarget, bytes]]:
        self._count([reply for _, reply, _ in answers])
        out: list[tuple[ReplyTarget, bytes]] = []
        # Per reply topic and correlation data: the members, and the rows of columns.
        grouped: dict[tuple[str, object], tuple[ReplyTarget, list[bytes], list[ResultRow]]] = {}
        for target, reply, packing in answers:
            if packing is Packing.ALONE:
                assert not isinstance(reply, ResultRow)  # rows only answer COLUMNS requests
                out.append((target, reply.to_bytes()))
                continue
            key = (target.topic, getattr(target.properties, "CorrelationData", None))
            _, members, rows = grouped.setdefault(key, (target, [], []))
            if isinstance(reply, ResultRow):
                rows.append(reply)
            else:
                members.append(reply.to_bytes())
        for target, members, rows in grouped.values():
            if rows:
                step = frames_per_message(len(rows[0].topk_labels))
                for start in range(0, len(rows), step):
                    part = rows[start : start + step]
                    columns = ResultColumns.of_rows(part, worker_id=self._worker_id)
                    out.append((target, columns.to_bytes()))
            for start in range(0, len(members), MAX_BUNDLE_FRAMES):
                chunk = members[start : start + MAX_BUNDLE_FRAMES]
                data = chunk[0] if len(chunk) == 1 else ReplyBundle(replies=tuple(chunk)).to_bytes()
                out.append((target, data))
        return out

    async def flush(self) -> None:
        """Wait until every reply published so far is acknowledged (or failed)."""
        if self._sending:
            await asyncio.wait(self._sending)

    def _count(self, replies: Sequence[WorkerReply]) -> None:
        """Errors by code, one at a time; results with one call (a counter per reply
        was measurable on a saturated worker)."""
        results = 0
        for reply in replies:
            if isinstance(reply, ErrorReply):
                self._metrics.error(reply.code)
            else:
                results += 1
        if results:
            self._metrics.request("ok", results)

    async def _publish(self, client: aiomqtt.Client, target: ReplyTarget, data: bytes) -> None:
        while len(self._sending) >= MAX_UNACKED_REPLIES:
            await asyncio.wait(self._sending, return_when=asyncio.FIRST_COMPLETED)
        self._publish_now(client, target, data)

    def _publish_now(self, client: aiomqtt.Client, target: ReplyTarget, data: bytes) -> None:
        sending: asyncio.Future[None]
        if isinstance(client, Client):  # no task, event and timeout per reply
            sending = client.publish_soon(
                target.topic, data, qos=self._qos, properties=target.properties
            )
        else:
            sending = asyncio.create_task(
                client.publish(target.topic, data, qos=self._qos, properties=target.properties)
            )
        self._sending.add(sending)
        sending.add_done_callback(self._sent)

    def _sent(self, sending: asyncio.Future[None]) -> None:
        self._sending.discard(sending)
        if not sending.cancelled() and (exc := sending.exception()) is not None:
            # The edge falls back at its deadline; nothing else can be done for it.
            logger.warning("worker %s: a reply was not delivered: %s", self._worker_id, exc)
