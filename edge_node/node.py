"""The edge node: capture, gate, classify locally, offload some frames, decide each once.

Tasks::

    capture   source -> motion gate -> local model -> policy -> local decision,
              or (in-flight slot) -> one offload task per frame
    link      connect, subscribe, route replies and worker status; on a lost
              connection fail the frames in flight over to local decisions and
              reconnect with jittered backoff, while capture goes on
    status    retained edge status (and the console line) every status interval

Every captured frame ends in exactly one ledger decision (see ``pipeline.protocol.
Decision``): ``skipped`` (no motion), ``local`` (the policy kept it, or offloading was
held back: workers busy, broker unreachable, in-flight limit), ``cloud``, one of the
``local-after-*`` fallbacks (carrying the local model's answer), or ``dropped`` (a live
source outran a node with no local model).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from functools import partial

import aiomqtt
import numpy as np
from aiomqtt import Will

from edge_node.backpressure import OffloadGovernor
from edge_node.estimators import LinkEstimator, WorkerLoad
from edge_node.homeassistant import discovery_messages, ha_state_topic, state_payload
from edge_node.ledger import Ledger, LedgerSummary
from edge_node.live import DroppedFrame, LatestFrameReader
from edge_node.local_model import LocalModel, LocalOutput
from edge_node.metrics import EdgeMetrics
from edge_node.motion import MotionGate, load_mask
from edge_node.outcomes import BUSY_CODES, Outcome, decision_for, with_local_answer
from edge_node.pacing import Pacer, frames_per_second
from edge_node.partition import PartitionPlanner, Plan
from edge_node.partition_model import PartitionedModel
from edge_node.policies import Route, policy_from_config
from edge_node.quality import (
    Conditions,
    FixedQuality,
    QualityChoice,
    QualityPolicy,
    make_quality_policy,
)
from edge_node.replies import LinkLostError, ReplyRouter
from edge_node.requests import Payload, build_request
from edge_node.sender import FrameSender
from edge_node.sources import CapturedFrame, FrameSource
from edge_node.stats import EdgeStats, EdgeStatsSnapshot, format_status_line
from edge_node.thresholds import adaptive_threshold
from pipeline.codecs import Image, encode_jpeg
from pipeline.config import Config
from pipeline.errors import BrokerError, CodecError, ModelError, ProtocolError
from pipeline.heap import freeze_heap
from pipeline.looplag import watch_loop_lag
from pipeline.mqtt import backoff_delays, make_client, payload_bytes
from pipeline.protocol import (
    Decision,
    EdgeStatus,
    Event,
    PayloadCodec,
    Result,
    WorkerStatus,
)
from pipeline.quantize import TensorWireDType
from pipeline.tasks import cancel_and_wait

__all__ = ["EdgeNode"]

logger = logging.getLogger(__name__)


class EdgeNode:
    def __init__(
        self,
        config: Config,
        source: FrameSource,
        ledger: Ledger,
        *,
        local_model: LocalModel | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self._config = config
        self._cfg = config.edge
        self._topics = config.topics
        self._source = source
        self.ledger = ledger
        self._local = local_model
        self._policy = policy_from_config(self._cfg)
        self._partition: PartitionedModel | None = None
        self._planner: PartitionPlanner | None = None
        self.partition_choices: Counter[int] = Counter()  # split point -> frames
        self._plans: dict[str, tuple[Plan, float]] = {}  # offloads in flight: their plan
        self.adaptive = adaptive_threshold(self._cfg)
        if self.adaptive is not None:
            self._policy = self.adaptive
        self._motion: MotionGate | None = None
        self._on_status = on_status
        self._mqtt5 = config.broker.protocol == "5"
        self._replies = ReplyRouter(self.edge_id)
        self.sender = FrameSender(
            edge_id=self.edge_id,
            topic=self._topics.frames(self.edge_id),
            response_topic=self._topics.results(self.edge_id),
            mqtt5=self._mqtt5,
            qos=self._cfg.qos,
            bundle=self._cfg.bundle,
        )
        self._slots = asyncio.Semaphore(self._cfg.max_in_flight)
        self._run_token = secrets.token_hex(4)  # frame ids stay unique across restarts
        self._client: aiomqtt.Client | None = None
        self.governor = OffloadGovernor()
        # How much of each offloaded frame to send (edge.quality_policy), and what it
        # is chosen from: the link as measured by answered offloads, the workers' load.
        self.quality: QualityPolicy = FixedQuality(self._cfg.jpeg_quality)
        link_prior = None if self._cfg.link_kbps is None else self._cfg.link_kbps * 125.0
        self.link = LinkEstimator(prior_bytes_per_s=link_prior)
        self.worker_load = WorkerLoad()
        self.quality_choices: Counter[str] = Counter()  # "jpeg-abbrev q50 x1" -> frames
        self._overhead_bytes = 0.0  # envelope + topic beyond the payload, last seen
        self.stats = EdgeStats()
        self.metrics = EdgeMetrics(self.edge_id)
        self.metrics_port: int | None = None  # bound port once the endpoint is up
        self.reconnects = 0

    @property
    def edge_id(self) -> str:
        return self._cfg.edge_id

    @property
    def bad_replies(self) -> int:
        """Replies that did not decode, or whose correlation data named another frame."""
        return self._replies.bad_replies

    @property
    def late_replies(self) -> int:
        """Replies for frames already decided (late, duplicate) or not ours."""
        return self._replies.late_replies

    async def run(
        self, *, max_frames: int | None = None, stop: asyncio.Event | None = None
    ) -> LedgerSummary:
        """Capture until the source ends, ``max_frames`` or ``stop``; then let every
        frame in flight reach its decision and return the ledger's summary.

        The broker must be reachable at start (within ``broker.connect_timeout_s``) so a
        wrong address is a clear error; after that, outages are ridden out locally.
        """
        await self._load_local_model()
        if self._cfg.freeze_heap:
            # Before capturing: the collection it runs first is the pause it saves later.
            frozen = freeze_heap()
            logger.debug("edge %s: froze %d start-up objects", self.edge_id, frozen)
        if self._cfg.metrics_port is not None:
            self.metrics_port = self.metrics.serve(self._cfg.metrics_port, self._cfg.metrics_addr)
        connected = asyncio.Event()
        link = asyncio.create_task(self._link(connected), name="edge-link")
        lag = asyncio.create_task(watch_loop_lag(self.metrics.loop_lag.observe), name="edge-lag")
        try:
            await self._wait_first_connection(link, connected)
            status = asyncio.create_task(self._status_loop(), name="edge-status")
            try:
                await self._capture(max_frames, stop)
            finally:
                await cancel_and_wait([status])
            await self._publish_status(online=False)
        finally:
            await self.sender.close()
            await cancel_and_wait([link, lag])
            await asyncio.to_thread(self.metrics.close)
        return self.ledger.summary()

    async def _load_local_model(self) -> None:
        cfg = self._cfg
        if cfg.partition == "auto" and cfg.local_model is not None:
            self._partition, self._planner = await asyncio.to_thread(
                _partition_for, cfg.local_model, cfg.device_slowdown, cfg.tensor_dtype
            )
            return
        if self._local is None and cfg.local_model is not None:
            # Reading weights and building the model is slow: keep it off the loop.
            self._local = await asyncio.to_thread(
                LocalModel, cfg.local_model, split=cfg.split, tensor_dtype=cfg.tensor_dtype
            )
        if self._policy.needs_local_model and self._local is None:
            raise ModelError(f"policy {self._policy.name!r} needs a local model")
        if cfg.payload == "tensor" and (self._local is None or not self._local.can_send_tensors):
            raise ModelError(
                "payload 'tensor' needs an early-exit local model (e.g. fmnist_exit_resnet)"
            )
        if cfg.quality_policy != "fixed":
            split = self._local.split if self._local else None
            self.quality = await asyncio.to_thread(make_quality_policy, cfg, local_split=split)

    async def _wait_first_connection(
        self, link: asyncio.Task[None], connected: asyncio.Event
    ) -> None:
        waiter = asyncio.create_task(connected.wait())
        timeout = self._config.broker.connect_timeout_s
        try:
            await asyncio.wait({waiter, link}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            waiter.cancel()
        if link.done():
            link.result()  # raises what ended it
        if not connected.is_set():
            raise BrokerError(
                f"edge {self.edge_id}: cannot connect to the broker at {self._config.broker.url} "
                f"within {timeout:g} s"
            )

    # -- the broker connection -----------------------------------------------------

    def _make_client(self) -> aiomqtt.Client:
        return make_client(
            self._config.broker,
            client_id=self.edge_id,
            will=Will(
                self._topics.edge_status(self.edge_id),
                self._status(online=False).to_bytes(),
                qos=1,
                retain=True,
            ),
        )

    async def _link(self, connected: asyncio.Event) -> None:
        delays = backoff_delays()
        while True:
            client = self._make_client()
            try:
                async with client:
                    await client.subscribe(self._topics.results(self.edge_id), qos=self._cfg.qos)
                    await client.subscribe(self._topics.worker_status_filter, qos=0)
                    self._client = client
                    if connected.is_set():
                        self.reconnects += 1
                        logger.warning("edge %s: reconnected to the broker", self.edge_id)
                    connected.set()
                    delays = backoff_delays()
                    await self._publish_status(online=True)
                    if self._cfg.homeassistant:
                        await self._announce_to_home_assistant(client)
                    await self._route_messages(client)
            except aiomqtt.MqttError as exc:
                if connected.is_set():
                    logger.warning(
                        "edge %s: broker connection lost (%s); deciding locally, reconnecting",
                        self.edge_id,
                        exc,
                    )
                else:
                    logger.info("edge %s: broker not reachable yet: %s", self.edge_id, exc)
            finally:
                self._client = None
                self._replies.fail_all("the broker connection was lost")
            await asyncio.sleep(next(delays))

    async def _route_messages(self, client: aiomqtt.Client) -> None:
        status_prefix = self._topics.worker_status_filter[:-1]  # ".../status/workers/"
        async for message in client.messages:
            if message.topic.value.startswith(status_prefix):
                self._on_worker_status(message)
            else:
                self._replies.on_message(message)

    def _on_worker_status(self, message: aiomqtt.Message) -> None:
        try:
            status = WorkerStatus.from_bytes(payload_bytes(message))
        except ProtocolError as exc:
            logger.warning("edge %s: bad worker status on %s: %s", self.edge_id, message.topic, exc)
            return
        self.governor.on_worker_status(status)
        self.worker_load.on_status(status)

    # -- capture and decisions -----------------------------------------------------

    async def _capture(self, max_frames: int | None, stop: asyncio.Event | None) -> None:
        pacer = Pacer(frames_per_second(self._cfg.rate, self._source.fps))
        live = self._source.live
        reader = LatestFrameReader(self._source) if live else None
        if reader is not None:
            reader.start()
        seq = 0

        def more() -> bool:
            return (max_frames is None or seq < max_frames) and not (stop and stop.is_set())

        try:
            async with asyncio.TaskGroup() as frames:
                while more():
                    if reader is not None:
                        frame, dropped = await self._next_live(reader, stop)
                        for lost in dropped:
                            if more():
                                await self._record_drop(seq, lost)
                                seq += 1
                        if frame is None or not more():
                            if frame is None:
                                break
                            continue
                    else:
                        # Replaying a file: wait for a slot before reading, so the
                        # deadline clock starts when the frame can actually be sent.
                        await self._slots.acquire()
                        frame = await asyncio.to_thread(self._source.read)
                        if frame is None:
                            self._slots.release()
                            break
                    frame_id = self._captured(seq, frame.capture_ts, frame.true_label)
                    offloading = await self._triage(frame_id, seq, frame, holding_slot=not live)
                    if offloading is not None:
                        frames.create_task(offloading, name=f"frame-{seq}")
                    elif not live:
                        self._slots.release()
                    seq += 1
                    await pacer.wait()
        finally:
            if reader is not None:
                await reader.stop()
            await asyncio.to_thread(self._source.close)

    def _captured(self, seq: int, capture_ts: float, true_label: int | None) -> str:
        frame_id = f"{self._run_token}-{seq}"
        self.ledger.capture(frame_id, seq=seq, capture_ts=capture_ts, true_label=true_label)
        self.stats.record_capture()
        self.metrics.record_capture()
        return frame_id

    async def _next_live(
        self, reader: LatestFrameReader, stop: asyncio.Event | None
    ) -> tuple[CapturedFrame | None, list[DroppedFrame]]:
        """The reader's next frame, or (None, []) once ``stop`` is set (a stalled
        stream must not keep the node from stopping)."""
        if stop is None:
            return await reader.next()
        reading = asyncio.create_task(reader.next())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if reading.done():
            return reading.result()
        await cancel_and_wait([reading])
        return None, []

    async def _record_drop(self, seq: int, lost: DroppedFrame) -> None:
        frame_id = self._captured(seq, lost.capture_ts, None)
        outcome = Outcome(Decision.DROPPED, detail="the node fell behind the camera")
        await self._finish(frame_id, seq, outcome)

    async def _triage(
        self, frame_id: str, seq: int, frame: CapturedFrame, *, holding_slot: bool
    ) -> Coroutine[None, None, None] | None:
        """Decide ``frame`` here, or return the coroutine that offloads it."""
        if self._motion_gate_skips(frame):
            await self._finish(frame_id, seq, Outcome(Decision.SKIPPED, detail="no motion"))
            return None
        local = None
        split = self._local.split if self._local else None
        planned: tuple[Plan, float] | None = None
        if self._partition is not None:
            planned_mono = time.monotonic()
            plan = self._plan_partition()
            self.partition_choices[plan.point] += 1
            if plan.point > 0:
                local = await asyncio.to_thread(self._partition.run, plan.point, frame.image)
            if plan.point == self._partition.local_point:
                self._observe_plan(plan, planned_mono)
                outcome = with_local_answer(
                    Decision.LOCAL, local, self._partition.name, detail="partition: all local"
                )
                await self._finish(frame_id, seq, outcome, local=local)
                return None
            split = plan.point or None
            planned = (plan, planned_mono)
        elif self._local is not None:
            local = await asyncio.to_thread(self._classify_locally, frame.image)
        local_name = self._local.name if self._local else None
        if self._partition is not None:
            local_name = self._partition.name
        if self.adaptive is not None and local is not None:
            self.adaptive.observe_local(local)
        if self._policy.route(local) is Route.LOCAL:
            outcome = with_local_answer(Decision.LOCAL, local, local_name)
            await self._finish(frame_id, seq, outcome, local=local)
            return None
        choice = self._choose_quality(frame, local)
        if not choice.offload:
            outcome = with_local_answer(Decision.LOCAL, local, local_name, detail=choice.reason)
            await self._finish(frame_id, seq, outcome, local=local)
            return None
        hold = self.governor.hold_reason()
        if self._client is None:
            hold = "broker unreachable"
        if hold is None and not holding_slot:
            if self._slots.locked():
                hold = f"{self._cfg.max_in_flight} frames already in flight"
            else:
                await self._slots.acquire()  # free: checked just above
        if hold is not None:
            if local is None and hold.endswith("in flight"):
                # A camera never waits for the cloud: with no local answer, drop it.
                await self._finish(frame_id, seq, Outcome(Decision.DROPPED, detail=hold))
            else:
                outcome = with_local_answer(Decision.LOCAL, local, local_name, detail=hold)
                await self._finish(frame_id, seq, outcome, local=local)
            return None
        payload: Payload | None = None
        if self._partition is not None and split is not None:
            payload = "tensor"  # the planner cut at a split point: send its activation
        if planned is not None:
            self._plans[frame_id] = planned  # popped when the offload ends
        return self._offload(frame_id, seq, frame, local, choice, split=split, payload=payload)

    def _classify_locally(self, image: Image) -> LocalOutput:
        """The local model's answer; ``edge.device_slowdown`` stretches its time."""
        assert self._local is not None
        started = time.monotonic()
        local = self._local.classify(image)
        if self._cfg.device_slowdown > 1.0:
            time.sleep((self._cfg.device_slowdown - 1.0) * (time.monotonic() - started))
        return local

    def _observe_plan(self, plan: Plan, planned_mono: float) -> None:
        assert self._planner is not None
        self._planner.observe(plan, (time.monotonic() - planned_mono) * 1000)

    def _plan_partition(self) -> Plan:
        assert self._planner is not None
        wait_ms, per_image_ms = self.worker_load.wait_and_per_image_ms()
        return self._planner.choose(
            self.link.estimate().network_ms_for, wait_ms=wait_ms, per_image_ms=per_image_ms
        )

    def _choose_quality(self, frame: CapturedFrame, local: LocalOutput | None) -> QualityChoice:
        """Ask the quality policy (JPEG payloads only; others go as they are)."""
        if self._cfg.payload != "jpeg" or (self._partition is not None and local is not None):
            return QualityChoice(True, PayloadCodec.JPEG, self._cfg.jpeg_quality, 1.0, None, "")
        conditions = Conditions(
            time_left_ms=self._cfg.deadline_ms - (time.time() - frame.capture_ts) * 1000,
            link=self.link.estimate(),
            worker_ms=self.worker_load.estimated_ms(),
            overhead_bytes=self._overhead_bytes,
        )
        return self.quality.choose(local, conditions)

    def _motion_gate_skips(self, frame: CapturedFrame) -> bool:
        threshold = self._cfg.motion_threshold
        if threshold is None:
            return False
        if self._motion is None:
            mask = None
            if self._cfg.motion_mask:
                mask = load_mask(self._cfg.motion_mask, frame.image.shape[:2])
            self._motion = MotionGate(threshold=threshold, mask=mask)
        return not self._motion.check(frame.image).moving

    async def _offload(
        self,
        frame_id: str,
        seq: int,
        frame: CapturedFrame,
        local: LocalOutput | None,
        choice: QualityChoice,
        *,
        split: int | None,
        payload: Payload | None = None,
    ) -> None:
        """Send ``frame`` (``payload``, default edge.payload; a tensor from ``split``),
        wait for its answer until the deadline, and decide it."""
        loop = asyncio.get_running_loop()
        payload = payload or self._cfg.payload
        future = self._replies.expect(frame_id)
        local_name = self._local.name if self._local else None
        bytes_sent = 0
        sent_mono = time.monotonic()
        outcome: Outcome
        try:
            cfg = self._cfg
            request = await asyncio.to_thread(
                partial(
                    build_request,
                    frame_id=frame_id,
                    edge_id=self.edge_id,
                    seq=seq,
                    frame=frame,
                    local=local,
                    split=split,
                    payload=payload,
                    jpeg_quality=choice.quality,
                    deadline_ms=cfg.deadline_ms,
                    model=cfg.model,
                    jpeg_codec=choice.codec,
                    scale=choice.scale,
                )
            )
            data = request.to_bytes()
            if request.codec.is_jpeg:
                self.quality_choices[
                    f"{choice.codec.value} q{choice.quality} x{choice.scale:g}"
                ] += 1
            topic = self._topics.frames(self.edge_id)
            self._overhead_bytes = len(data) - len(request.payload) + len(topic)
            client = self._connected_client()
            sent_mono = time.monotonic()
            # The deadline covers the publish too: on a saturated link a QoS 1 publish
            # waits for its PUBACK behind everything queued ahead of it.
            async with asyncio.timeout_at(
                loop.time() + max(0.0, request.deadline_ts - time.time())
            ):
                bytes_sent = len(data)
                await self.sender.send(client, frame_id, data)
                reply = await future
        except TimeoutError:
            outcome = with_local_answer(
                Decision.LOCAL_AFTER_TIMEOUT, local, local_name, bytes_sent=bytes_sent
            )
        except (CodecError, ProtocolError, aiomqtt.MqttError, LinkLostError) as exc:
            logger.warning("edge %s: frame %s not answered: %s", self.edge_id, frame_id, exc)
            outcome = with_local_answer(
                Decision.LOCAL_AFTER_ERROR,
                local,
                local_name,
                bytes_sent=bytes_sent,
                detail=str(exc)[:200],
            )
        else:
            rtt_ms = (time.monotonic() - sent_mono) * 1000
            if isinstance(reply, Result):
                self.governor.on_answer()
                if self._planner is not None:
                    self._planner.measured()
                self.link.record(
                    message_bytes=bytes_sent,
                    rtt_ms=rtt_ms,
                    worker_ms=reply.queue_ms + reply.decode_ms + reply.inference_ms,
                )
                outcome = Outcome(
                    Decision.CLOUD,
                    label=reply.label,
                    confidence=reply.confidence,
                    model=reply.model,
                    bytes_sent=bytes_sent,
                    rtt_ms=rtt_ms,
                )
            else:
                if reply.code in BUSY_CODES:
                    self.governor.on_busy()
                outcome = with_local_answer(
                    decision_for(reply),
                    local,
                    local_name,
                    bytes_sent=bytes_sent,
                    detail=f"{reply.code.value}: {reply.message}"[:200],
                )
        finally:
            self._replies.forget(frame_id)
            self._slots.release()
        planned = self._plans.pop(frame_id, None)
        if planned is not None:
            self._observe_plan(*planned)
        if self.adaptive is not None:
            self.adaptive.observe_offload(
                (time.time() - frame.capture_ts) * 1000,
                answered=outcome.decision is Decision.CLOUD,
            )
        await self._finish(frame_id, seq, outcome, local=local, payload=payload)

    def _connected_client(self) -> aiomqtt.Client:
        if self._client is None:
            raise LinkLostError("broker unreachable")
        return self._client

    async def _finish(
        self,
        frame_id: str,
        seq: int,
        outcome: Outcome,
        *,
        local: LocalOutput | None = None,
        payload: str | None = None,
    ) -> None:
        """Record the frame's one final decision and announce it on the events topic."""
        now = time.time()
        true_label = self.ledger.decide(
            frame_id,
            outcome.decision,
            decided_ts=now,
            label=outcome.label,
            confidence=outcome.confidence,
            bytes_sent=outcome.bytes_sent,
            rtt_ms=outcome.rtt_ms,
            detail=outcome.detail,
            model=outcome.model,
            local_label=local.label if local else None,
            local_confidence=local.confidence if local else None,
            payload=(payload or self._cfg.payload) if outcome.decision.offloaded else None,
        )
        self.stats.record_decision(
            outcome.decision, rtt_ms=outcome.rtt_ms, bytes_sent=outcome.bytes_sent
        )
        self.metrics.record_decision(
            outcome.decision, rtt_ms=outcome.rtt_ms, bytes_sent=outcome.bytes_sent
        )
        client = self._client
        if client is None:
            return  # events are informational; the ledger is the record
        event = Event(
            edge_id=self.edge_id,
            frame_id=frame_id,
            seq=seq,
            ts=now,
            decision=outcome.decision,
            bytes_sent=outcome.bytes_sent,
            label=outcome.label,
            confidence=outcome.confidence,
            model=outcome.model,
            latency_ms=outcome.rtt_ms,
            true_label=true_label,
        )
        # QoS 0, and a broken connection must not turn a decided frame into an exception.
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(self._topics.events(self.edge_id), event.to_bytes(), qos=0)

    # -- status ----------------------------------------------------------------------

    def _status(self, *, online: bool, snap: EdgeStatsSnapshot | None = None) -> EdgeStatus:
        counts = self.ledger.counts()
        snap = snap or self.stats.snapshot()
        return EdgeStatus(
            edge_id=self.edge_id,
            online=online,
            ts=time.time(),
            captured=counts.captured,
            in_flight=len(self._replies),
            offloaded=counts.offloaded,
            decided=counts.decided,
            skipped=snap.skipped,
            dropped=snap.dropped,
            bytes_sent=snap.bytes_sent,
            capture_fps=snap.capture_fps,
            skipped_fps=snap.skipped_fps,
            offload_share=snap.offload_share or 0.0,
            rtt_ms_p50=snap.rtt_ms_p50,
            connected=self._client is not None,
        )

    async def _announce_to_home_assistant(self, client: aiomqtt.Client) -> None:
        messages = discovery_messages(
            self._config.prefix,
            self.edge_id,
            discovery_prefix=self._cfg.homeassistant_prefix,
            version=_package_version(),
        )
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1, retain=True)

    async def _publish_status(
        self, *, online: bool, snapshot: EdgeStatsSnapshot | None = None
    ) -> None:
        client = self._client
        if client is None:
            return
        snapshot = snapshot or self.stats.snapshot()
        self.metrics.set_in_flight(len(self._replies))
        self.metrics.update(snapshot)
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(
                self._topics.edge_status(self.edge_id),
                self._status(online=online, snap=snapshot).to_bytes(),
                qos=1,
                retain=True,
            )
            if self._cfg.homeassistant:
                await client.publish(
                    ha_state_topic(self._config.prefix, self.edge_id),
                    state_payload(snapshot, online=online),
                    qos=0,
                    # Not retained: a restarted Home Assistant must not show a dead
                    # edge's last figures as current; the next state comes in a second.
                    retain=False,
                )

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self._cfg.status_interval_s)
            # One snapshot per interval for the console line, the status and the metrics.
            snapshot = self.stats.snapshot()
            if self._on_status is not None:
                self._on_status(format_status_line(snapshot))
            await self._publish_status(online=True, snapshot=snapshot)


def _package_version() -> str:
    try:
        return importlib.metadata.version("camoffload")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"  # running from a checkout that was never installed


def _partition_for(
    name: str, device_slowdown: float, tensor_dtype: TensorWireDType
) -> tuple[PartitionedModel, PartitionPlanner]:
    """The partitioned model and its planner, profiled on this device (blocking)."""
    model = PartitionedModel(name, device_slowdown=device_slowdown, tensor_dtype=tensor_dtype)
    channels, height, width = model.input_shape
    # The typical JPEG of a frame this size: a mid-grey image's, to start with.
    jpeg_bytes = len(encode_jpeg(np.full((height, width, channels), 128, np.uint8), 90))
    return model, PartitionPlanner(model.profile(jpeg_bytes))
