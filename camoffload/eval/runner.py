"""Run a suite: every cell through a real broker, real workers and a real edge.

Processes, reused where the matrix allows::

    suite     one broker (Mosquitto when installed), unless --broker names one
    data      its frames read once; the reference labels; the local models
    load      workers for the data's cloud model (``slowdown`` is theirs), and the
              background edges of the load (a child process), for every link
    link      a shaping proxy between the measured edge and the broker ("direct": none)
    strategy  the measured edge, in this process, replaying the frames like a camera

Workers and background load connect to the broker directly: they are "in the cloud";
only the measured edge's own link is shaped. Each cell's frames land in one ledger file
(a run per cell), and its measures in ``cells.jsonl``; ``frames.jsonl`` keeps every
frame for the latency CDFs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import platform
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from broker import local_broker
from camoffload.eval.frames import (
    PacedFrames,
    PreparedData,
    prepare_data,
    resolve_source,
)
from camoffload.eval.load import LoadProcess
from camoffload.eval.measures import CellMeasures, frame_rows, measure
from camoffload.eval.suite import Cell, DataSpec, LoadSpec, Suite
from camoffload.links import shaped_link
from camoffload.processes import WorkerGroup, WorkerSettings
from edge_node import EdgeNode, Ledger, LocalModel
from edge_node.ledger_rows import iter_frames
from edge_node.policies import ScoredPolicy, policy_from_config
from pipeline.config import Config, EdgeConfig, load_config
from pipeline.errors import CamoffloadError

__all__ = ["CellResult", "LocalModels", "SuiteRun", "run_suite"]

logger = logging.getLogger(__name__)

_WARMUP_FRAMES = 24  # through each new worker group first, so no cell pays its start-up


@dataclass(frozen=True, slots=True)
class CellResult:
    data: str
    load: str
    link: str
    strategy: str
    settings: dict[str, Any]  # the measured edge's edge.* settings, thresholds resolved
    measures: CellMeasures
    wall_s: float

    def as_json(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "load": self.load,
            "link": self.link,
            "strategy": self.strategy,
            "settings": self.settings,
            **self.measures.as_dict(),
            "wall_s": round(self.wall_s, 3),
        }


@dataclass(slots=True)
class SuiteRun:
    suite: Suite
    out_dir: Path
    cells: list[CellResult]
    meta: dict[str, Any]


Progress = Callable[[str], None]


async def run_suite(
    suite: Suite,
    out_dir: Path,
    *,
    broker_url: str | None = None,
    command: str = "",
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> SuiteRun:
    """Run every cell of ``suite``; raw results go to ``out_dir`` as they come.

    ``stop`` ends the run early but cleanly: the cell in progress stops capturing and
    decides the frames it has in flight, and no further cell starts.
    """
    stop = stop or asyncio.Event()
    say = progress or (lambda _line: None)
    await asyncio.to_thread(_prepare_out_dir, out_dir, suite)
    meta = _meta(suite, command)
    started = time.monotonic()
    results: list[CellResult] = []
    async with _broker(broker_url) as base:
        base = _with_prefix(base, f"eval-{suite.name}-{int(time.time())}")
        meta["broker"] = base.broker.url
        done = 0
        loads: dict[str, dict[str, Any]] = {}
        for data in suite.data:
            if stop.is_set():
                break
            say(f"data {data.name}: reading {suite.run.frames} frames of {data.source}")
            prepared = await asyncio.to_thread(prepare_data, data, suite.run.frames)
            locals_ = LocalModels()
            for load in suite.loads:
                if stop.is_set():
                    break
                async with _server(base, suite, prepared, load, say) as background:
                    for link in suite.links:
                        if stop.is_set():
                            break
                        async with shaped_link(base, link.profile) as edge_base:
                            for strategy in suite.strategies:
                                if stop.is_set():
                                    break
                                cell = Cell(data, load, link, strategy)
                                done += 1
                                say(f"[{done}/{suite.size}] {cell.key}")
                                result = await _run_cell(
                                    edge_base, suite, cell, prepared, locals_, out_dir, stop
                                )
                                results.append(result)
                                _append(out_dir / "cells.jsonl", result.as_json())
                                say(f"    {_brief(result.measures)}")
                if background is not None and background.counts is not None:
                    # The background load ran across all of this load's cells.
                    loads[f"{data.name}/{load.name}"] = dataclasses.asdict(background.counts)
                    say(f"    background load: {loads[f'{data.name}/{load.name}']}")
    meta["background_load"] = loads
    meta["wall_s"] = round(time.monotonic() - started, 1)
    meta["complete"] = not stop.is_set()
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return SuiteRun(suite, out_dir, results, meta)


def _prepare_out_dir(out_dir: Path, suite: Suite) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("cells.jsonl", "frames.jsonl", "ledger.sqlite"):
        if (out_dir / name).exists():
            raise CamoffloadError(f"{out_dir} already holds results ({name}); pick a new --out")
    (out_dir / "suite.toml").write_text(suite.source_text, encoding="utf-8")


def _brief(m: CellMeasures) -> str:
    return (
        f"accuracy {m.accuracy:.1%} ({m.timely_accuracy:.1%} in time), "
        f"p50 {m.latency_p50_ms:.0f} ms, p95 {m.latency_p95_ms:.0f} ms, "
        f"offloaded {m.offload_share:.0%}, {m.bytes_per_frame:.0f} B/frame"
    )


def _append(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


# -- processes ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _broker(url: str | None) -> AsyncIterator[Config]:
    if url is not None:
        yield load_config(env={}, overrides=[f"broker.url={url}"])
        return
    process = local_broker("auto")
    info = await asyncio.to_thread(process.start)
    try:
        yield load_config(
            env={},
            overrides=[
                f"broker.url={info.url}",
                f"broker.protocol={info.protocol}",
                f"worker.shared_subscription={info.shared_subscriptions}",
            ],
        )
    finally:
        await asyncio.to_thread(process.stop)


def _with_prefix(config: Config, prefix: str) -> Config:
    return dataclasses.replace(config, prefix=prefix)


@contextlib.asynccontextmanager
async def _server(
    base: Config, suite: Suite, data: PreparedData, load: LoadSpec, say: Progress
) -> AsyncIterator[LoadProcess | None]:
    """Workers for ``data``'s model under ``load``, warmed up, and the background load
    (whose counts are on the yielded process once the block ends)."""
    spec = data.spec
    settings = WorkerSettings(
        model=spec.cloud_model,
        count=suite.run.workers,
        max_batch=suite.run.max_batch,
        slowdown=load.slowdown,
        group_tag=f"{spec.name}-{load.name}",
    )
    say(f"starting {settings.count} worker(s) for {spec.cloud_model} ({load.name})")
    workers = WorkerGroup(base, settings)
    await workers.start()
    background: LoadProcess | None = None
    try:
        await _warm_up(base, data, suite)
        if load.edges:
            background = LoadProcess(
                broker_url=base.broker.url,
                prefix=base.prefix,
                edges=load.edges,
                rate=load.rate,
                # Other cameras' frames: the training split where there is one.
                source=resolve_source(spec.source.replace(":test", ":train")),
                model=spec.cloud_model,
                deadline_ms=suite.run.deadline_ms,
                max_in_flight=suite.run.max_in_flight,
            )
            background.start()
            await asyncio.sleep(suite.run.warmup_s)
            if not background.running:
                raise CamoffloadError(f"background load stopped: {background.exit_message()}")
        yield background
    finally:
        try:
            if background is not None:
                await asyncio.to_thread(background.stop)
        finally:
            await workers.stop()


async def _warm_up(base: Config, data: PreparedData, suite: Suite) -> None:
    """A few frames through the new workers (torch's first batches are slow)."""
    n = min(_WARMUP_FRAMES, len(data.images))
    warm = PreparedData(data.spec, data.images[:n], data.labels[:n])
    config = _edge_config(base, suite, data.spec, {"policy": "cloud-only"}, edge_id="warmup")
    ledger = Ledger()
    try:
        await EdgeNode(config, PacedFrames(warm, 50.0), ledger).run()
    finally:
        ledger.close()


# -- one cell ----------------------------------------------------------------------------


class LocalModels:
    """Local models by (name, split), loaded once per data set; keep-local scores cached."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, int], LocalModel] = {}
        self._confidences: dict[tuple[str, int, str, str | None], np.ndarray] = {}

    async def get(self, name: str, split: int) -> LocalModel:
        key = (name, split)
        if key not in self._models:
            self._models[key] = await asyncio.to_thread(LocalModel, name, split=split)
        return self._models[key]

    async def confidences(
        self, name: str, split: int, data: PreparedData, edge: EdgeConfig
    ) -> np.ndarray:
        """Each frame's keep-local score under ``edge.policy`` (max-softmax for
        ``threshold``, the router's score for ``router``, ...): what its threshold
        compares, so a coverage target is a quantile of these."""
        key = (name, split, edge.policy, edge.router)
        if key not in self._confidences:
            model = await self.get(name, split)
            policy = await asyncio.to_thread(policy_from_config, edge)
            if not isinstance(policy, ScoredPolicy):
                raise CamoffloadError(f"policy {edge.policy!r} has no threshold to set coverage")

            def scores() -> np.ndarray:
                frames = (model.classify(image) for image in data.images)
                return np.array([policy.keep_score(f) for f in frames], dtype=np.float64)

            self._confidences[key] = await asyncio.to_thread(scores)
        return self._confidences[key]


def _edge_config(
    base: Config, suite: Suite, data: DataSpec, settings: dict[str, Any], *, edge_id: str
) -> Config:
    values: dict[str, Any] = {
        "edge_id": edge_id,
        "model": data.cloud_model,
        "deadline_ms": suite.run.deadline_ms,
        "max_in_flight": suite.run.max_in_flight if suite.run.pacing == "camera" else 1,
        "rate": "max",  # the source paces itself, like a camera
        "status_interval_s": 1.0,
        **suite.run.edge,
    }
    values.update(settings)
    overrides = [f"edge.{key}={_setting(value)}" for key, value in values.items()]
    overrides += [
        f"broker.url={base.broker.url}",
        f"broker.protocol={base.broker.protocol}",
        f"prefix={base.prefix}",
    ]
    return load_config(env={}, overrides=overrides)


def _setting(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


async def _run_cell(
    base: Config,
    suite: Suite,
    cell: Cell,
    data: PreparedData,
    locals_: LocalModels,
    out_dir: Path,
    stop: asyncio.Event,
) -> CellResult:
    settings = dict(cell.strategy.settings)
    wants_local = (
        settings.get("policy", "cloud-only") != "cloud-only"
        or "payload" in settings
        or settings.get("partition", "off") != "off"
    )
    if "local_model" not in settings and data.spec.local_model is not None and wants_local:
        settings["local_model"] = data.spec.local_model
    local_name = settings.get("local_model")
    split = int(settings.get("split", data.spec.split))
    if local_name is not None:
        settings.setdefault("split", split)
    if cell.strategy.coverage is not None:
        if local_name is None:
            raise CamoffloadError(f"{cell.key}: a coverage target needs a local model")
        scoring = _edge_config(base, suite, data.spec, settings, edge_id="coverage").edge
        confidences = await locals_.confidences(local_name, split, data, scoring)
        # Offload the (1 - coverage) lowest-scoring frames: they fall below this.
        settings["confidence_threshold"] = float(
            np.quantile(confidences, 1.0 - cell.strategy.coverage)
        )
    edge_id = "m-" + "-".join(
        part.replace("_", "-") for part in (cell.load.name, cell.link.name, cell.strategy.name)
    )
    config = _edge_config(base, suite, data.spec, settings, edge_id=edge_id[:60])
    local = await locals_.get(local_name, split) if local_name is not None else None
    ledger_path = out_dir / "ledger.sqlite"
    run_id = cell.key
    ledger = Ledger(ledger_path, run_id=run_id)
    started = time.monotonic()
    try:
        fps = suite.run.rate if suite.run.pacing == "camera" else None
        node = EdgeNode(config, PacedFrames(data, fps), ledger, local_model=local)
        await node.run(stop=stop)
    finally:
        ledger.close()
    wall_s = time.monotonic() - started
    records = list(iter_frames(ledger_path, run_id=run_id))
    measures = measure(records, data.labels, slo_ms=suite.run.slo_ms)
    rows = frame_rows(records, data.labels)
    with (out_dir / "frames.jsonl").open("a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({"cell": cell.key, **dataclasses.asdict(row)}) + "\n")
    return CellResult(
        data=cell.data.name,
        load=cell.load.name,
        link=cell.link.name,
        strategy=cell.strategy.name,
        settings=settings,
        measures=measures,
        wall_s=wall_s,
    )


def _meta(suite: Suite, command: str) -> dict[str, Any]:
    import torch

    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH, for the record
            capture_output=True,
            text=True,
            check=False,
            timeout=5,
        ).stdout.strip()
    import os

    return {
        "suite": suite.name,
        "quick": suite.quick,
        "command": command,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "commit": commit,
        "frames": suite.run.frames,
        "rate": suite.run.rate,
        "deadline_ms": suite.run.deadline_ms,
        "slo_ms": suite.run.slo_ms,
    }
