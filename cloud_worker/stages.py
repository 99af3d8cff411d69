"""The worker's batch stages: queue -> batch -> decode -> classify -> replies.

Two stages, one batch apart: while the inference thread classifies a batch, a decode
thread decodes the next (OpenCV releases the GIL), so decoding costs the inference
thread nothing; a batch with few JPEG bytes (raw pixels and tensors are only viewed,
never decoded) decodes on the loop instead (:data:`INLINE_DECODE_BYTES`). At most one
decoded batch waits for it. A batch's requests are checked against their deadlines
once more when the batch is formed (:class:`Admission`): those that would be late are
answered ``expired`` instead of computed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor

import aiomqtt

from cloud_worker.admission import Admission
from cloud_worker.backlog import Backlog
from cloud_worker.metrics import WorkerMetrics
from cloud_worker.processing import (
    DecodedBatch,
    Pending,
    ServedModel,
    WorkerReply,
    classify_batch,
    decode_batch,
)
from cloud_worker.replying import Answer, ReplyPublisher
from cloud_worker.stats import WorkerStats
from pipeline.config import WorkerConfig
from pipeline.protocol import DetectionResult, ErrorCode, ErrorReply, Result, ResultRow
from pipeline.topics import ReplyTarget

__all__ = [
    "GOODBYE_TIMEOUT_S",
    "INLINE_DECODE_BYTES",
    "BatchStages",
    "classify_slowed",
    "refusal",
]

GOODBYE_TIMEOUT_S = 3.0
"""How long a worker going away spends telling edges so (and finishing a batch's replies)."""

INLINE_DECODE_BYTES = 32 * 1024
"""A batch with at most this many JPEG bytes decodes on the event loop: the hop to the
decode thread and back (two loop wake-ups, two GIL hand-overs, ~80 us of CPU here)
costs more than decoding a few small JPEGs (~20 us each at 28x28), and a camera's frame
one message at a time makes batches of one or two. Raw pixels and tensors are viewed in
place (``np.frombuffer``), so they never count. Bigger batches, and any camera-sized
JPEG, still decode in the thread, off the loop (~1 ms at most here)."""


def refusal(
    stats: WorkerStats, worker_id: str, code: ErrorCode, message: str, frame_id: str | None
) -> ErrorReply:
    """The error reply that refuses a request (counted as rejected)."""
    stats.record_rejected()
    return ErrorReply(frame_id=frame_id, worker_id=worker_id, code=code, message=message[:1000])


class BatchStages:
    """One connection's decode and classify stages over the worker's backlog."""

    def __init__(
        self,
        *,
        cfg: WorkerConfig,
        client: aiomqtt.Client,
        classifier: ServedModel,
        executor: ThreadPoolExecutor,
        backlog: Backlog,
        admission: Admission,
        replies: ReplyPublisher,
        stats: WorkerStats,
        metrics: WorkerMetrics,
    ) -> None:
        self._cfg = cfg
        self._client = client
        self._classifier = classifier
        self._executor = executor
        self._backlog = backlog
        self._admission = admission
        self._replies = replies
        self._stats = stats
        self._metrics = metrics

    async def run(self) -> None:
        worker_id = self._cfg.worker_id
        decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{worker_id}-decode")
        decoded: asyncio.Queue[DecodedBatch] = asyncio.Queue(maxsize=1)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._decode_stage(decoder, decoded))
                group.create_task(self._classify_stage(decoded))
        finally:
            decoder.shutdown(wait=False, cancel_futures=True)

    async def _decode_stage(
        self, decoder: ThreadPoolExecutor, out: asyncio.Queue[DecodedBatch]
    ) -> None:
        loop = asyncio.get_running_loop()
        backlog = self._backlog
        while True:
            units = await backlog.next_batch(
                max_batch=self._cfg.max_batch, max_wait_s=self._cfg.max_wait_ms / 1000
            )
            batch = [pending for unit in units for pending in unit]
            # Taken from the queue but not yet computing: answered by the goodbye if the
            # worker is cancelled before the inference thread gets them.
            backlog.held[id(batch)] = batch
            live = await self._drop_expired(batch)
            backlog.held.pop(id(batch), None)
            if not live:
                for _ in units:
                    backlog.queue.task_done()
                continue
            backlog.held[id(live)] = live
            if _jpeg_bytes(live) <= INLINE_DECODE_BYTES:
                decoded = decode_batch(live, self._classifier, self._cfg.worker_id)
            else:
                decoded = await loop.run_in_executor(
                    decoder, decode_batch, live, self._classifier, self._cfg.worker_id
                )
            # Its units are done (queue.join, the drain) once the batch is answered.
            decoded.units = len(units)
            await out.put(decoded)

    async def _classify_stage(self, decoded_batches: asyncio.Queue[DecodedBatch]) -> None:
        while True:
            decoded = await decoded_batches.get()
            self._backlog.held.pop(id(decoded.batch), None)
            try:
                await self._compute(decoded)
            finally:
                for _ in range(decoded.units):
                    self._backlog.queue.task_done()

    async def _compute(self, decoded: DecodedBatch) -> None:
        live = decoded.batch
        started = time.monotonic()
        self._backlog.computing = len(live)
        future = asyncio.get_running_loop().run_in_executor(
            self._executor,
            classify_slowed,
            decoded,
            self._classifier,
            self._cfg.worker_id,
            self._cfg.slowdown,
        )
        try:
            replies = await asyncio.shield(future)
        except asyncio.CancelledError:
            # Shutting down mid-batch: the thread finishes anyway, so deliver its
            # answers instead of letting those edges wait for their deadline.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(GOODBYE_TIMEOUT_S):
                    await self._send_replies(live, await future)
            raise
        finally:
            self._backlog.computing = 0
        compute_s = time.monotonic() - started
        computed = sum(
            1 for _, reply in replies if isinstance(reply, Result | ResultRow | DetectionResult)
        )
        if computed:
            self._stats.record_batch(len(live), compute_s * 1000)
            self._metrics.batch(
                computed, compute_s, [decoded.started - p.received_mono for p in live]
            )
        await self._send_replies(live, replies)

    async def _send_replies(
        self, live: list[Pending], replies: list[tuple[ReplyTarget, WorkerReply]]
    ) -> None:
        # Hand the whole batch to the broker at once: awaiting each QoS 1 PUBACK in turn
        # caps a worker at a few hundred frames/s.
        await self._replies.deliver(
            self._client,
            [
                (target, reply, pending.packing)
                for pending, (target, reply) in zip(live, replies, strict=True)
            ],
        )

    async def _drop_expired(self, batch: list[Pending]) -> list[Pending]:
        """The requests of ``batch`` that can still be answered in time; the rest are
        answered ``expired`` without being computed."""
        now = time.time()
        # This batch computes after the one in the inference thread now.
        frames = len(batch) + self._backlog.computing
        # Deadline.met_by, once for the batch: most frames are in time.
        ready = self._admission.ready_ts(frames, now)
        live = [p for p in batch if ready < p.request.deadline_ts]
        if len(live) == len(batch):
            return live
        live = []
        expired: list[Answer] = []
        for pending in batch:
            late = self._admission.late_in_batch(pending.request, batch_frames=frames, now=now)
            if late is None:
                live.append(pending)
                continue
            reply = refusal(
                self._stats, self._cfg.worker_id, late.code, late.message, pending.request.frame_id
            )
            expired.append((pending.target, reply, pending.packing))
        if expired:
            await self._replies.deliver(self._client, expired)
        return live


def _jpeg_bytes(batch: list[Pending]) -> int:
    """The bytes of ``batch`` that decoding costs time for: its JPEG payloads'."""
    return sum(len(p.request.payload) for p in batch if p.request.codec.is_jpeg)


def classify_slowed(
    decoded: DecodedBatch, classifier: ServedModel, worker_id: str, slowdown: float
) -> list[tuple[ReplyTarget, WorkerReply]]:
    """``classify_batch``, then hold the inference thread ``slowdown - 1`` times as long
    again (``worker.slowdown``): the whole compute path, timings and queue, slows alike."""
    started = time.monotonic()
    replies = classify_batch(decoded, classifier, worker_id)
    if slowdown > 1.0:
        time.sleep((slowdown - 1.0) * (time.monotonic() - started))
    return replies
