"""``camoffload demo``: a broker, one worker and one edge replaying a video, in one go."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2

from broker import BrokerKind, BrokerProcess, local_broker
from camoffload.security import SecuritySummary, counted, draw_detections, frame_at
from cloud_worker import CloudWorker
from edge_node import EdgeNode, FrameSource, Ledger, LedgerSummary, open_source
from edge_node.ledger_objects import ObjectSummary, objects_in
from edge_node.ledger_rows import FrameRecord, iter_frames
from pipeline.config import Config, EdgeConfig, WorkerConfig
from pipeline.errors import CamoffloadError, SourceError
from pipeline.tasks import cancel_and_wait

__all__ = ["SAMPLE_CLIP", "DemoOutcome", "default_video", "run_demo", "security_config"]

logger = logging.getLogger(__name__)

SAMPLE_CLIP = "vtest_clip.avi"
"""The first 150 frames of OpenCV's ``vtest.avi``, re-encoded (scripts/make_demo_clip.py)."""


def default_video() -> Path:
    """The demo's clip, shipped inside the package (``camoffload/data/``).

    Package data only: the product never looks beside the checkout or in a system
    folder for its defaults. The full 795-frame ``vtest.avi`` is an ordinary source to
    pass by path.
    """
    clip = Path(str(resources.files("camoffload") / "data" / SAMPLE_CLIP))
    if not clip.is_file():
        raise SourceError(
            f"the demo's clip is missing from the installed package ({clip}); reinstall "
            "camoffload, or pass a video file, image folder or camera index"
        )
    return clip


@dataclass(frozen=True, slots=True)
class DemoOutcome:
    summary: LedgerSummary
    broker: str  # "mosquitto (mqtt://...)", "embedded (...)" or the given URL
    source: str
    model: str
    security: SecuritySummary | None = None  # task detect: who and what was in view
    snapshot: Path | None = None  # task detect: the busiest frame, boxes drawn
    objects: tuple[ObjectSummary, ...] = ()  # task detect: the objects tracked
    start_ts: float = 0.0  # the first frame's capture time


def security_config(config: Config) -> Config:
    """The demo's security camera: people at the edge (ssdlite_person), everything the
    cloud sees for the frames it is unsure of (nanodet_coco), at the clip's own frame
    rate. Fields the user set (anything not at its default) are left as they are."""
    edge, worker = config.edge, config.worker
    defaults = EdgeConfig()
    return dataclasses.replace(
        config,
        edge=dataclasses.replace(
            edge,
            task="detect",
            model=DETECT_CLOUD if edge.model == defaults.model else edge.model,
            local_model=edge.local_model or DETECT_EDGE,
            policy="threshold" if edge.policy == defaults.policy else edge.policy,
            # A camera's pace: objects live and end in the clip's own time.
            rate="real" if edge.rate == defaults.rate else edge.rate,
        ),
        worker=dataclasses.replace(
            worker,
            model=DETECT_CLOUD if worker.model == WorkerConfig().model else worker.model,
        ),
    )


DETECT_EDGE = "ssdlite_person"
DETECT_CLOUD = "nanodet_coco"


async def run_demo(
    config: Config,
    *,
    source: str,
    frames: int | None,
    broker_url: str | None = None,
    broker_kind: BrokerKind = "auto",
    stop: asyncio.Event | None = None,
    out_dir: Path | None = None,
) -> DemoOutcome:
    """Start a broker (unless ``broker_url``), a worker and an edge; replay ``source``.

    With task detect and an ``out_dir``, the ledger goes there (unless configured) and
    so does the busiest frame with its boxes drawn."""
    broker_proc: BrokerProcess | None = None
    if broker_url is None:
        broker_proc = local_broker(broker_kind)
        info = await asyncio.to_thread(broker_proc.start)
        broker_desc = f"{info.kind} ({info.url})"
        if info.limitations:
            logger.warning("using the %s broker; it lacks: %s", info.kind, info.limitations)
        else:
            logger.info("using the %s broker on %s", info.kind, info.url)
        config = dataclasses.replace(
            config,
            broker=dataclasses.replace(config.broker, url=info.url, protocol=info.protocol),
            worker=dataclasses.replace(
                config.worker, shared_subscription=info.shared_subscriptions
            ),
        )
    else:
        config = dataclasses.replace(
            config, broker=dataclasses.replace(config.broker, url=broker_url)
        )
        broker_desc = broker_url
    detect = config.edge.task == "detect"
    ledger_path = config.edge.ledger_path
    if detect and ledger_path is None and out_dir is not None:
        ledger_path = str(out_dir / "ledger.sqlite")  # read back for the security summary
    try:
        frame_source = await asyncio.to_thread(open_source, source)
        ledger = Ledger(ledger_path)
        try:
            summary = await _run_pair(config, frame_source, ledger, frames, stop)
        finally:
            ledger.close()
    finally:
        if broker_proc is not None:
            await asyncio.to_thread(broker_proc.stop)
    outcome = DemoOutcome(
        summary=summary, broker=broker_desc, source=source, model=config.worker.model
    )
    if detect and ledger_path is not None and out_dir is not None:
        records = await asyncio.to_thread(
            lambda: list(iter_frames(ledger_path, run_id=ledger.run_id))
        )
        security, snapshot = await asyncio.to_thread(
            _security, records, source, frame_source.fps, out_dir
        )
        outcome = dataclasses.replace(
            outcome,
            security=security,
            snapshot=snapshot,
            objects=tuple(objects_in(records, labels=config.edge.detect_classes)),
            start_ts=records[0].capture_ts if records else 0.0,
        )
    return outcome


def _security(
    records: list[FrameRecord], source: str, fps: float | None, out_dir: Path
) -> tuple[SecuritySummary, Path | None]:
    """The run's people and vehicles, and its busiest frame drawn to ``out_dir``."""
    security = SecuritySummary.from_records(records, fps)
    if security.busiest_seq is None:
        return security, None
    record = next(r for r in records if r.seq == security.busiest_seq)
    image = draw_detections(frame_at(source, record.seq), counted(record))
    snapshot = out_dir / f"frame-{record.seq:05d}.jpg"
    cv2.imwrite(str(snapshot), image)
    return security, snapshot


async def _run_pair(
    config: Config,
    frame_source: FrameSource,
    ledger: Ledger,
    frames: int | None,
    stop: asyncio.Event | None,
) -> LedgerSummary:
    worker = CloudWorker(config)
    ready = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        worker_task = tg.create_task(worker.run(ready=ready), name="demo-worker")
        ready_task = tg.create_task(ready.wait(), name="demo-worker-ready")
        await asyncio.wait({worker_task, ready_task}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.is_set():
            # A failing worker makes the group raise its error; this is the other case.
            raise CamoffloadError("the worker stopped before it was ready")
        edge = EdgeNode(config, frame_source, ledger)
        summary = await edge.run(max_frames=frames, stop=stop)
        await cancel_and_wait([worker_task])
    return summary
