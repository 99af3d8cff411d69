"""The offload round trip of one frame: build its request, publish it, wait for the
answer until its deadline, and turn what came back (or did not) into an outcome.

The deadline covers the publish too: on a saturated link a QoS 1 publish waits for its
PUBACK behind everything queued ahead of it. Whatever happens (a timeout, a lost
connection, a refusal), the outcome carries the local model's answer when there is one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from functools import partial

import aiomqtt

from edge_node.backpressure import OffloadGovernor
from edge_node.estimators import LinkEstimator
from edge_node.outcomes import (
    BUSY_CODES,
    Outcome,
    decision_for,
    detections_of,
    with_local_answer,
)
from edge_node.replies import ReplyRouter
from edge_node.requests import Payload, build_request
from edge_node.sender import FrameSender
from edge_node.sources import CapturedFrame
from edge_node.triage import OffloadPlan, Triage
from pipeline.config import EdgeConfig
from pipeline.errors import CodecError, LinkLostError, ProtocolError, TransportError
from pipeline.protocol import Decision, DetectionResult, Reply, Result, Task

__all__ = ["Offloader"]

logger = logging.getLogger(__name__)


class Offloader:
    def __init__(
        self,
        cfg: EdgeConfig,
        *,
        topic: str,
        replies: ReplyRouter,
        sender: FrameSender,
        governor: OffloadGovernor,
        link: LinkEstimator,
        triage: Triage,
        client: Callable[[], aiomqtt.Client | None],
    ) -> None:
        self._cfg = cfg
        self._topic = topic
        self._replies = replies
        self._sender = sender
        self._governor = governor
        self._link = link
        self._triage = triage
        self._client = client
        self.quality_choices: Counter[str] = Counter()  # "jpeg-abbrev q50 x1" -> frames

    async def round_trip(
        self, frame_id: str, seq: int, frame: CapturedFrame, plan: OffloadPlan
    ) -> tuple[Outcome, Payload]:
        """Offload ``frame`` as ``plan`` says; its outcome and the payload kind sent."""
        payload: Payload = plan.payload or self._cfg.payload
        future = self._replies.expect(frame_id)
        local, local_name = plan.local, plan.local_name
        bytes_sent = 0
        sent_mono = time.monotonic()
        outcome: Outcome
        try:
            data = await self._encode(frame_id, seq, frame, plan, payload)
            client = self._connected_client()
            sent_mono = time.monotonic()
            async with asyncio.timeout_at(plan.deadline.loop_time()):
                bytes_sent = len(data)
                await self._sender.send(client, frame_id, data)
                reply = await future
        except TimeoutError:
            if bytes_sent:
                self._link.record_timeout(
                    message_bytes=bytes_sent, waited_ms=(time.monotonic() - sent_mono) * 1000
                )
            outcome = with_local_answer(
                Decision.LOCAL_AFTER_TIMEOUT, local, local_name, bytes_sent=bytes_sent
            )
        except (CodecError, ProtocolError, TransportError) as exc:
            logger.warning("edge %s: frame %s not answered: %s", self._cfg.edge_id, frame_id, exc)
            outcome = with_local_answer(
                Decision.LOCAL_AFTER_ERROR,
                local,
                local_name,
                bytes_sent=bytes_sent,
                detail=str(exc)[:200],
            )
        else:
            rtt_ms = (time.monotonic() - sent_mono) * 1000
            outcome = self._answered(reply, plan, bytes_sent=bytes_sent, rtt_ms=rtt_ms)
        finally:
            self._replies.forget(frame_id)
        if plan.planned is not None:
            self._triage.observe_plan(*plan.planned)
        if self._triage.adaptive is not None:
            self._triage.adaptive.observe_offload(
                (time.time() - frame.capture_ts) * 1000,
                answered=outcome.decision is Decision.CLOUD,
            )
        return outcome, payload

    async def _encode(
        self, frame_id: str, seq: int, frame: CapturedFrame, plan: OffloadPlan, payload: Payload
    ) -> bytes:
        choice = plan.choice
        request = await asyncio.to_thread(
            partial(
                build_request,
                frame_id=frame_id,
                edge_id=self._cfg.edge_id,
                seq=seq,
                frame=frame,
                local=plan.local,
                split=plan.split,
                payload=payload,
                jpeg_quality=choice.quality,
                deadline=plan.deadline,
                model=self._cfg.model,
                task=Task.DETECT if self._cfg.task == "detect" else None,
                jpeg_codec=choice.codec,
                scale=choice.scale,
            )
        )
        data = request.to_bytes()
        if request.codec.is_jpeg:
            self.quality_choices[f"{choice.codec.value} q{choice.quality} x{choice.scale:g}"] += 1
        self._triage.overhead_bytes = len(data) - len(request.payload) + len(self._topic)
        return data

    def _answered(
        self, reply: Reply, plan: OffloadPlan, *, bytes_sent: int, rtt_ms: float
    ) -> Outcome:
        if isinstance(reply, Result | DetectionResult):
            self._governor.on_answer()
            if self._triage.planner is not None:
                self._triage.planner.measured()
            self._link.record(
                message_bytes=bytes_sent,
                rtt_ms=rtt_ms,
                worker_ms=reply.queue_ms + reply.decode_ms + reply.inference_ms,
            )
            if isinstance(reply, DetectionResult):
                return Outcome(
                    Decision.CLOUD,
                    confidence=reply.confidence,
                    model=reply.model,
                    bytes_sent=bytes_sent,
                    rtt_ms=rtt_ms,
                    detections=detections_of(reply),
                )
            return Outcome(
                Decision.CLOUD,
                label=reply.label,
                confidence=reply.confidence,
                model=reply.model,
                bytes_sent=bytes_sent,
                rtt_ms=rtt_ms,
            )
        if reply.code in BUSY_CODES:
            self._governor.on_busy()
        return with_local_answer(
            decision_for(reply),
            plan.local,
            plan.local_name,
            bytes_sent=bytes_sent,
            detail=f"{reply.code.value}: {reply.message}"[:200],
        )

    def _connected_client(self) -> aiomqtt.Client:
        client = self._client()
        if client is None:
            raise LinkLostError("broker unreachable")
        return client
