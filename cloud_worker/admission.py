"""Whether a worker takes a frame request: a pure step, with the worker's one estimate
of when an answer would be ready.

A request is refused (answered at once, never computed) when it has nowhere to reply,
when the worker is draining, when it comes from another edge than its topic says, when
it asks for another model, or when its deadline would pass before the worker could
answer it. The last is the worker's one estimate: the recent per-image compute time
(:meth:`WorkerStats.estimated_ms`) times the frames ahead of it and itself. It is asked
twice, on arrival and again when a batch is formed (frames may have waited since), and
both ask :meth:`Admission.ready_ts`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cloud_worker.stats import WorkerStats
from pipeline.deadline import Deadline
from pipeline.protocol import ErrorCode, FrameRequest
from pipeline.topics import ReplyTarget, Topics

__all__ = ["Admission", "Refusal"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is answered without being computed."""

    code: ErrorCode
    message: str


class Admission:
    def __init__(
        self, topics: Topics, stats: WorkerStats, *, served_model: Callable[[], str]
    ) -> None:
        self._topics = topics
        self._stats = stats
        self._served_model = served_model

    def ready_ts(self, frames: int, now: float) -> float:
        """When ``frames`` frames (those ahead and the ones asked about) would be done."""
        return now + self._stats.estimated_ms(frames) / 1000

    def check(
        self,
        topic: str,
        target: ReplyTarget | None,
        request: FrameRequest,
        *,
        draining: bool,
        frames_ahead: int,
        now: float | None = None,
    ) -> Refusal | None:
        """None to take ``request`` (arrived on ``topic``), else why not."""
        verdicts = self.check_all(
            topic, target, [request], draining=draining, frames_ahead=frames_ahead, now=now
        )
        return verdicts[0]

    def check_all(
        self,
        topic: str,
        target: ReplyTarget | None,
        requests: Sequence[FrameRequest],
        *,
        draining: bool,
        frames_ahead: int,
        now: float | None = None,
    ) -> list[Refusal | None]:
        """:meth:`check` for each request of one message, in order: what they share
        (where to reply, the worker's state, the topic's edge, the served model, the
        clock) is read once, and each request taken counts as ahead of the next."""
        if target is None:
            return [Refusal(ErrorCode.BAD_REQUEST, "nowhere to reply")] * len(requests)
        if draining:
            return [Refusal(ErrorCode.SHUTTING_DOWN, "worker is shutting down")] * len(requests)
        topic_edge = self._topics.edge_of_frames_topic(topic)
        served = self._served_model()
        now = time.time() if now is None else now
        verdicts: list[Refusal | None] = []
        for request in requests:
            refused = self._refuse(request, topic_edge, served, frames_ahead + 1, now)
            verdicts.append(refused)
            frames_ahead += refused is None
        return verdicts

    def _refuse(
        self, request: FrameRequest, topic_edge: str | None, served: str, frames: int, now: float
    ) -> Refusal | None:
        if topic_edge != request.edge_id:
            return Refusal(
                ErrorCode.BAD_REQUEST,
                f"edge_id {request.edge_id!r} does not match the topic's {topic_edge!r}",
            )
        if request.model != served:
            return Refusal(
                ErrorCode.UNKNOWN_MODEL, f"this worker serves {served!r}, not {request.model!r}"
            )
        deadline = Deadline(request.deadline_ts)
        if deadline.passed(now):
            return Refusal(ErrorCode.EXPIRED, "deadline passed on arrival")
        ready = self.ready_ts(frames, now)
        if not deadline.met_by(ready):
            return Refusal(
                ErrorCode.EXPIRED,
                f"the deadline is {deadline.remaining_ms(now):.0f} ms away and "
                f"the work queued ahead needs ~{(ready - now) * 1000:.0f} ms",
            )
        return None

    def late_in_batch(
        self, request: FrameRequest, *, batch_frames: int, now: float | None = None
    ) -> Refusal | None:
        """Whether a request taken from the queue would now miss its deadline, its batch
        of ``batch_frames`` (and the batch computing ahead of it) done first."""
        now = time.time() if now is None else now
        deadline = Deadline(request.deadline_ts)
        if deadline.met_by(self.ready_ts(batch_frames, now)):
            return None
        if deadline.passed(now):
            return Refusal(ErrorCode.EXPIRED, "deadline passed in the queue")
        return Refusal(ErrorCode.EXPIRED, "deadline would pass before this batch finishes")
