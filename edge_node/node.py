"""The edge node: capture, gate, classify locally, offload some frames, decide each once.

The node is wiring. Its parts, each with one job::

    triage     frame -> motion gate -> local model -> policy -> quality: a decision
               here, or a plan to offload (edge_node.triage; no MQTT)
    offload    a plan -> request -> publish -> the answer within the deadline, or the
               local fallback (edge_node.offload)
    recorder   a decision -> ledger (kept through a full disk: edge_node.ledger_keeper),
               stats, metrics, events topic (edge_node.recorder)
    reporter   retained status with a last will, console line, metrics, Home
               Assistant (edge_node.reporting)
    link       connect, subscribe, route replies and worker status; on a lost
               connection fail the frames in flight over to local decisions and
               reconnect (pipeline.service.BrokerLink), while capture goes on

Every captured frame ends in exactly one ledger decision (``pipeline.protocol.Decision``:
skipped, local, cloud, a local-after-* fallback, or dropped).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Coroutine

import aiomqtt

from edge_node.backpressure import OffloadGovernor
from edge_node.controls import EdgeControls
from edge_node.estimators import LinkEstimator, WorkerLoad
from edge_node.ledger import Ledger, LedgerSummary
from edge_node.ledger_keeper import LedgerKeeper
from edge_node.live import DroppedFrame, LatestFrameReader, next_or_stop
from edge_node.local_model import LocalModel
from edge_node.metrics import EdgeMetrics
from edge_node.objects import watcher_for
from edge_node.offload import Offloader
from edge_node.outcomes import Outcome, with_local_answer
from edge_node.pacing import Pacer, frames_per_second
from edge_node.quality import QualityPolicy
from edge_node.recorder import Recorder
from edge_node.replies import ReplyRouter
from edge_node.reporting import EdgeReporter
from edge_node.sender import FrameSender
from edge_node.sources import CapturedFrame, FrameSource
from edge_node.stats import EdgeStats
from edge_node.thresholds import AdaptiveThreshold
from edge_node.tracker import watched_labels
from edge_node.triage import Decided, OffloadPlan, Triage
from pipeline.config import Config
from pipeline.errors import ProtocolError
from pipeline.heap import freeze_heap
from pipeline.looplag import watch_loop_lag
from pipeline.mqtt import payload_bytes
from pipeline.protocol import Decision, WorkerStatus
from pipeline.service import BrokerLink
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
        self._cfg = cfg = config.edge
        self._topics = topics = config.topics
        self._source = source
        self.ledger = ledger
        self._replies = ReplyRouter(self.edge_id)
        self.sender = FrameSender(
            edge_id=self.edge_id,
            topic=topics.frames(self.edge_id),
            response_topic=topics.results(self.edge_id),
            mqtt5=config.broker.protocol == "5",
            qos=cfg.qos,
            bundle=cfg.bundle,
        )
        self._slots = asyncio.Semaphore(cfg.max_in_flight)
        self.governor = OffloadGovernor()
        # What offloading is chosen from: the link as measured by answered offloads,
        # and the workers' load from their retained status.
        link_prior = None if cfg.link_kbps is None else cfg.link_kbps * 125.0
        self.link = LinkEstimator(prior_bytes_per_s=link_prior)
        self.worker_load = WorkerLoad()
        self.stats = EdgeStats()
        self.metrics = EdgeMetrics(self.edge_id)
        self.metrics_port: int | None = None  # bound port once the endpoint is up
        self._broker = BrokerLink(
            config.broker,
            client_id=self.edge_id,
            what=f"edge {self.edge_id}",
            will=lambda: self._reporter.status.will(),
            on_lost=self._replies.fail_all,
        )
        self._triage = Triage(
            cfg, link=self.link, worker_load=self.worker_load, local_model=local_model
        )
        self._offloader = Offloader(
            cfg,
            topic=topics.frames(self.edge_id),
            replies=self._replies,
            sender=self.sender,
            governor=self.governor,
            link=self.link,
            triage=self._triage,
            client=self._client,
        )
        self.controls = EdgeControls(cfg, topics, self._triage, on_labels=self._watch)
        self._keeper = LedgerKeeper(ledger)
        self._recorder = Recorder(
            edge_id=self.edge_id,
            run_token=secrets.token_hex(4),  # frame ids stay unique across restarts
            ledger=self._keeper,
            stats=self.stats,
            metrics=self.metrics,
            events_topic=topics.events(self.edge_id),
            default_payload=cfg.payload,
            client=self._client,
        )
        self._reporter = EdgeReporter(
            config,
            ledger=self._keeper,
            stats=self.stats,
            metrics=self.metrics,
            in_flight=self._replies.__len__,
            client=self._client,
            on_status=on_status,
        )

    # -- what callers and tests read -------------------------------------------------

    @property
    def edge_id(self) -> str:
        return self._cfg.edge_id

    @property
    def reconnects(self) -> int:
        return self._broker.reconnects

    @property
    def bad_replies(self) -> int:
        """Replies that did not decode, or whose correlation data named another frame."""
        return self._replies.bad_replies

    @property
    def late_replies(self) -> int:
        """Replies for frames already decided (late, duplicate) or not ours."""
        return self._replies.late_replies

    @property
    def quality(self) -> QualityPolicy:
        return self._triage.quality

    @property
    def quality_choices(self) -> Counter[str]:
        return self._offloader.quality_choices

    @property
    def partition_choices(self) -> Counter[int]:
        return self._triage.partition_choices

    @property
    def adaptive(self) -> AdaptiveThreshold | None:
        return self._triage.adaptive

    def _client(self) -> aiomqtt.Client | None:
        return self._broker.client

    # -- lifecycle -------------------------------------------------------------------

    async def run(
        self, *, max_frames: int | None = None, stop: asyncio.Event | None = None
    ) -> LedgerSummary:
        """Capture until the source ends, ``max_frames`` or ``stop``; then let every
        frame in flight reach its decision and return the ledger's summary.

        The broker must be reachable at start (within ``broker.connect_timeout_s``) so a
        wrong address is a clear error; after that, outages are ridden out locally.
        """
        await self._triage.load()
        if self._cfg.task == "detect":
            self._recorder.objects = watcher_for(
                self._config, self._triage.local_labels, self._client
            )
        if self._cfg.freeze_heap:
            # Before capturing: the collection it runs first is the pause it saves later.
            frozen = freeze_heap()
            logger.debug("edge %s: froze %d start-up objects", self.edge_id, frozen)
        if self._cfg.metrics_port is not None:
            self.metrics_port = self.metrics.serve(self._cfg.metrics_port, self._cfg.metrics_addr)
        link = asyncio.create_task(self._broker.run(self._session), name="edge-link")
        lag = asyncio.create_task(watch_loop_lag(self.metrics.loop_lag.observe), name="edge-lag")
        try:
            await self._broker.wait_connected(link)
            status = asyncio.create_task(self._reporter.run(), name="edge-status")
            try:
                await self._capture(max_frames, stop)
                if self._recorder.objects is not None:
                    await self._recorder.objects.finish(time.time())
            finally:
                await cancel_and_wait([status])
            await self._reporter.publish(online=False)
        finally:
            await self.sender.close()
            await cancel_and_wait([link, lag])
            await asyncio.to_thread(self.metrics.close)
            self._keeper.finish()
        return self.ledger.summary()

    async def _watch(self, labels: frozenset[str]) -> None:
        watched = watched_labels(labels)
        if self._recorder.objects is not None:
            self._recorder.objects.tracker.labels = watched
        await self._reporter.watch(watched)

    # -- the broker connection -----------------------------------------------------

    async def _session(self, client: aiomqtt.Client) -> None:
        """One connection: subscribe, announce, route messages until it is lost."""
        await client.subscribe(self._topics.results(self.edge_id), qos=self._cfg.qos)
        await client.subscribe(self._topics.worker_status_filter, qos=0)
        await client.subscribe(self.controls.set_filter, qos=1)
        await self._reporter.announce(client)
        await self.controls.announce(client)
        status_prefix = self._topics.worker_status_filter[:-1]  # ".../status/workers/"
        async for message in client.messages:
            topic = message.topic.value
            if topic.startswith(status_prefix):
                self._on_worker_status(message)
            elif self.controls.is_for(topic):
                await self.controls.on_message(client, message)
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
                        frame, dropped = await next_or_stop(reader, stop)
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
                    frame_id = self._recorder.captured(seq, frame.capture_ts, frame.true_label)
                    offloading = await self._decide(frame_id, seq, frame, holding_slot=not live)
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

    async def _record_drop(self, seq: int, lost: DroppedFrame) -> None:
        frame_id = self._recorder.captured(seq, lost.capture_ts, None)
        outcome = Outcome(Decision.DROPPED, detail="the node fell behind the camera")
        await self._recorder.decided(frame_id, seq, outcome)

    async def _decide(
        self, frame_id: str, seq: int, frame: CapturedFrame, *, holding_slot: bool
    ) -> Coroutine[None, None, None] | None:
        """Decide ``frame`` here, or return the coroutine that offloads it."""
        verdict = await self._triage.triage(frame)
        if isinstance(verdict, Decided):
            await self._recorder.decided(
                frame_id, seq, verdict.outcome, local=verdict.local, frame=frame
            )
            return None
        hold = await self._hold_reason(holding_slot=holding_slot)
        if hold is None:
            return self._offload(frame_id, seq, frame, verdict)
        local = verdict.local
        if local is None and hold.endswith("in flight"):
            # A camera never waits for the cloud: with no local answer, drop it.
            outcome = Outcome(Decision.DROPPED, detail=hold)
        else:
            outcome = with_local_answer(Decision.LOCAL, local, verdict.local_name, detail=hold)
        await self._recorder.decided(frame_id, seq, outcome, local=local, frame=frame)
        return None

    async def _hold_reason(self, *, holding_slot: bool) -> str | None:
        """Why an offload may not go now, or None (then a slot is held for it)."""
        hold = self.controls.hold_reason() or self.governor.hold_reason()
        if self._client() is None:
            hold = "broker unreachable"
        if hold is None and not holding_slot:
            if self._slots.locked():
                return f"{self._cfg.max_in_flight} frames already in flight"
            await self._slots.acquire()  # free: checked just above
        return hold

    async def _offload(
        self, frame_id: str, seq: int, frame: CapturedFrame, plan: OffloadPlan
    ) -> None:
        try:
            outcome, payload = await self._offloader.round_trip(frame_id, seq, frame, plan)
        finally:
            self._slots.release()
        await self._recorder.decided(
            frame_id, seq, outcome, local=plan.local, payload=payload, frame=frame
        )
