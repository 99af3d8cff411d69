"""``camoffload eval --suite security``: the security camera's strategies, each a real
replay, against a reference detector.

A cell is one :func:`camoffload.replay.run_replay`: a local Mosquitto, the suite's
workers, the measured edge paced like a camera, and the shaping proxy for a shaped
link. Cells share nothing, so one cell's backlog (a saturated 1 Mbit/s link) cannot
leak into the next. The reference is the suite's cloud detector on each full-quality
decoded frame, run once per data set, offline (no broker).

Data sets come from the suite (``source = "package:NAME"`` is a file shipped in
``camoffload/data``) and, when the command line gives one, a video file by path
(``--source-file``): the product never looks outside the package by itself.

A results folder::

    suite.toml, meta.json       the suite as run; machine, command, data sets, wall time
    reference-DATA.json         the reference's detections, one list per frame
    cells.jsonl                 one line per cell: its settings and measures, or why
                                it was skipped
    ledgers/DATA--LINK--STRATEGY.sqlite   each cell's ledger
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from camoffload.eval.security_measures import (
    Detections,
    hand_agreement,
    measure_security,
    people,
    vehicles,
)
from camoffload.eval.specialize_cells import Taught, exit_shares, teach, with_trained
from camoffload.eval.suite import DataSpec, LinkSpec, Strategy, Suite
from camoffload.replay import ReplayOptions, run_replay
from camoffload.security import COUNT_MIN_SCORE
from edge_node import open_source
from edge_node.ledger_rows import iter_frames
from pipeline.calibration import default_calibration_path
from pipeline.config import Config, load_config
from pipeline.detection import Detector
from pipeline.errors import CamoffloadError, ConfigError

__all__ = ["SecurityData", "check_security_suite", "reference_detections", "run_security"]

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
_PACKAGE = "package:"


@dataclass(frozen=True, slots=True)
class SecurityData:
    spec: DataSpec
    path: Path  # the video file replayed
    shown: str  # how the report names it (a package path says only where pip put it)


def check_security_suite(suite: Suite) -> None:
    """What a replay per cell cannot do, refused before anything starts."""
    if suite.analysis not in ("security", "specialize"):
        raise ConfigError(
            f"suite {suite.name}: analysis is {suite.analysis!r}, not security or specialize"
        )
    if suite.run.pacing != "camera":
        raise ConfigError(f"suite {suite.name}: the security suite paces like a camera")
    for load in suite.loads:
        if not load.idle:
            raise ConfigError(
                f"suite {suite.name} [loads.{load.name}]: each security cell is its own "
                "replay with its own worker; background loads are not supported"
            )
    for strategy in suite.strategies:
        if strategy.coverage is not None:
            raise ConfigError(f"suite {suite.name}: coverage targets are for classifiers")


def data_sets(suite: Suite, source_file: Path | None) -> list[SecurityData]:
    """The suite's data sets, then ``source_file`` (named after its stem) if given."""
    out = [SecurityData(d, *_resolve(d.source)) for d in suite.data]
    if source_file is not None:
        if not source_file.is_file():
            raise ConfigError(f"--source-file {source_file}: no such file")
        names = {d.spec.name for d in out}
        name = source_file.stem if source_file.stem not in names else f"{source_file.stem}-file"
        spec = dataclasses.replace(suite.data[0], name=name, source=str(source_file))
        out.append(SecurityData(spec, source_file, str(source_file)))
    return out


def _resolve(source: str) -> tuple[Path, str]:
    if source.startswith(_PACKAGE):
        name = source.removeprefix(_PACKAGE)
        path = Path(str(resources.files("camoffload") / "data" / name))
        if not path.is_file():
            raise ConfigError(f"{source}: not in the installed package ({path})")
        return path, f"{name} (shipped)"
    return Path(source), source


def reference_detections(path: Path, model: str, frames: int) -> list[list[dict[str, Any]]]:
    """``model`` on each of the first ``frames`` frames of ``path``, decoded as the edge
    decodes them (:func:`edge_node.open_source`), at full quality."""
    detector = Detector.by_name(model, min_score=COUNT_MIN_SCORE)
    source = open_source(str(path))
    out: list[list[dict[str, Any]]] = []
    try:
        while len(out) < frames and (frame := source.read()) is not None:
            found = detector.detect_one(frame.image)
            # As the ledger keeps a detection, so both sides are read alike.
            out.append([{"label": d.name, "score": round(d.score, 3), "box": d.box} for d in found])
    finally:
        source.close()
    if not out:
        raise CamoffloadError(f"{path}: no frames to read")
    return out


def cell_config(
    suite: Suite, data: DataSpec, strategy: Strategy, *, ledger: Path, edge_id: str
) -> Config:
    """The measured edge's config: a detection task, the suite's pace and deadline,
    then the strategy's own edge.* settings. Cloud-only has no local model, so a frame
    the cloud does not answer in time has no answer at all (as a camera without one)."""
    values: dict[str, Any] = {
        "edge_id": edge_id,
        "task": "detect",
        "model": data.cloud_model,
        "rate": suite.run.rate,
        "deadline_ms": suite.run.deadline_ms,
        "max_in_flight": suite.run.max_in_flight,
        "ledger_path": ledger,
        **suite.run.edge,
        **strategy.settings,
    }
    wants_detector = (
        values.get("policy", "cloud-only") != "cloud-only" and "specialized" not in values
    )
    if wants_detector and data.local_model is not None:
        values.setdefault("local_model", data.local_model)
    overrides = [f"edge.{key}={_setting(value)}" for key, value in values.items()]
    overrides += [f"worker.model={data.cloud_model}", f"worker.max_batch={suite.run.max_batch}"]
    return load_config(env={}, overrides=overrides)


def _setting(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _missing_calibration(config: Config) -> str | None:
    """Why a gompertz cell cannot run as itself: without its calibration the edge falls
    back to fixed quality, which would pass off the fixed cascade's numbers as its own."""
    edge = config.edge
    if edge.quality_policy != "gompertz":
        return None
    path = Path(edge.calibration) if edge.calibration else default_calibration_path(edge.model)
    return None if path.is_file() else f"no Gompertz calibration for {edge.model} ({path})"


async def run_security(
    suite: Suite,
    out_dir: Path,
    *,
    source_file: Path | None = None,
    hand_counts: dict[int, int] | None = None,
    command: str = "",
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> dict[str, Any]:
    """Run every cell of ``suite`` into ``out_dir``; returns the run's meta.json."""
    check_security_suite(suite)
    stop = stop or asyncio.Event()
    say = progress or (lambda _line: None)
    datas = data_sets(suite, source_file)
    await asyncio.to_thread(_prepare_out_dir, out_dir, suite)
    meta = _meta(suite, command, hand_counts is not None)
    started = time.monotonic()
    size = len(datas) * len(suite.links) * len(suite.strategies)
    done = 0
    for data in datas:
        if stop.is_set():
            break
        say(f"data {data.spec.name}: reference {data.spec.cloud_model} on {data.shown}")
        reference = await asyncio.to_thread(
            reference_detections, data.path, data.spec.cloud_model, suite.run.frames
        )
        path = out_dir / f"reference-{data.spec.name}.json"
        path.write_text(json.dumps(reference) + "\n", encoding="utf-8")
        meta["data"][data.spec.name] = _data_meta(data, reference, hand_counts)
        taught: Taught | None = None
        if suite.analysis == "specialize":
            say(f"data {data.spec.name}: teaching a specialized model the first half")
            taught = await asyncio.to_thread(
                teach, data.spec.name, data.path, reference, out_dir,
                reference_model=data.spec.cloud_model,
            )  # fmt: skip
            meta["data"][data.spec.name]["specialized"] = taught.meta
        measured = reference[taught.start :] if taught is not None else reference
        for link in suite.links:
            for strategy in suite.strategies:
                if stop.is_set():
                    break
                done += 1
                key = f"{data.spec.name}/{link.name}/{strategy.name}"
                say(f"[{done}/{size}] {key}")
                cell = Cell(data, link, strategy, measured, taught)
                row = await _run_cell(suite, cell, out_dir, stop)
                row = {"data": data.spec.name, "link": link.name, "strategy": strategy.name, **row}
                with (out_dir / "cells.jsonl").open("a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                say(f"    {_brief(row)}")
                # After every cell, so a run that dies still leaves a folder to report on.
                _write_meta(out_dir, meta, started, complete=False)
    _write_meta(out_dir, meta, started, complete=not stop.is_set())
    return meta


def _write_meta(out_dir: Path, meta: dict[str, Any], started: float, *, complete: bool) -> None:
    meta["wall_s"] = round(time.monotonic() - started, 1)
    meta["complete"] = complete
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Cell:
    data: SecurityData
    link: LinkSpec
    strategy: Strategy
    reference: list[list[dict[str, Any]]]  # the frames replayed, from ``start``
    taught: Taught | None  # the specialized model taught this run (suite specialize)

    @property
    def start(self) -> int:
        """The source's frames skipped first: the half a model learned from."""
        return self.taught.start if self.taught is not None else 0


async def _run_cell(suite: Suite, cell: Cell, out_dir: Path, stop: asyncio.Event) -> dict[str, Any]:
    data, link, strategy = cell.data, cell.link, cell.strategy
    ledger = out_dir / "ledgers" / f"{data.spec.name}--{link.name}--{strategy.name}.sqlite"
    ledger.parent.mkdir(exist_ok=True)
    edge_id = f"sec-{strategy.name}"[:60]
    settings = with_trained(strategy.settings, cell.taught)
    config = cell_config(
        suite,
        data.spec,
        dataclasses.replace(strategy, settings=settings),
        ledger=ledger,
        edge_id=edge_id,
    )
    skipped = _missing_calibration(config)
    if skipped is not None:
        return {"settings": dict(strategy.settings), "skipped": skipped}
    options = ReplayOptions(
        source=str(data.path),
        frames=len(cell.reference),
        link=None if link.direct else link.profile,
        workers=suite.run.workers,
        progress=False,
        start=cell.start,
    )
    started, cpu = time.monotonic(), time.process_time()
    await run_replay(config, options, stop=stop)
    # The edge runs in this process (the broker and the workers in their own): its CPU.
    cpu_s, wall_s = time.process_time() - cpu, time.monotonic() - started
    records = await asyncio.to_thread(lambda: list(iter_frames(ledger)))
    measures = measure_security(records, cell.reference)
    row = {
        "settings": dict(strategy.settings),
        **measures.as_dict(),
        "edge_cpu_ms_per_frame": round(1000 * cpu_s / max(1, len(cell.reference)), 2),
        "wall_s": round(wall_s, 1),
        "ledger": str(ledger.relative_to(out_dir)),
    }
    if cell.taught is not None and "specialized" in settings:
        row["exit_shares"] = exit_shares(records, cell.taught.exits, len(cell.reference))
    return row


def _brief(row: dict[str, Any]) -> str:
    if "skipped" in row:
        return f"skipped: {row['skipped']}"
    f1 = row["person_f1"]
    return (
        f"person F1 {'-' if f1 is None else f'{f1:.3f}'}, count error {row['count_mae']:.2f}, "
        f"offloaded {row['offload_share']:.0%}, {row['bytes_per_frame']:.0f} B/frame, "
        f"p95 {row['latency_p95_ms'] or 0:.0f} ms, {row['wall_s']} s"
    )


def _data_meta(
    data: SecurityData, reference: list[list[dict[str, Any]]], hand: dict[int, int] | None
) -> dict[str, Any]:
    frames: list[Detections] = list(reference)
    agreement = hand_agreement(frames, hand) if hand is not None else None
    return {
        "source": data.shown,
        "frames": len(frames),
        "cloud_model": data.spec.cloud_model,
        "local_model": data.spec.local_model,
        "frames_with_people": sum(1 for r in frames if people(r) > 0),
        "mean_people": sum(people(r) for r in frames) / len(frames),
        "frames_with_vehicles": sum(1 for r in frames if vehicles(r) > 0),
        "hand": None if agreement is None else dataclasses.asdict(agreement),
    }


def _prepare_out_dir(out_dir: Path, suite: Suite) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / "cells.jsonl").exists():
        raise CamoffloadError(f"{out_dir} already holds results (cells.jsonl); pick a new --out")
    (out_dir / "suite.toml").write_text(suite.source_text, encoding="utf-8")


def _meta(suite: Suite, command: str, hand_given: bool) -> dict[str, Any]:
    return {
        "suite": suite.name,
        "analysis": suite.analysis,
        "quick": suite.quick,
        "command": command,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "python": platform.python_version(),
        "frames": suite.run.frames,
        "rate": suite.run.rate,
        "deadline_ms": suite.run.deadline_ms,
        "hand_counts_given": hand_given,
        "data": {},
    }
