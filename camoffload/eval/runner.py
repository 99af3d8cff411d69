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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from camoffload.eval.cell import CellResult, LocalModels, run_cell
from camoffload.eval.frames import prepare_data
from camoffload.eval.measures import CellMeasures
from camoffload.eval.servers import serve_load, suite_broker
from camoffload.eval.suite import Cell, Suite
from camoffload.links import shaped_link
from pipeline.config import Config
from pipeline.errors import CamoffloadError

__all__ = ["CellResult", "LocalModels", "SuiteRun", "run_suite"]

logger = logging.getLogger(__name__)


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
    async with suite_broker(broker_url) as base:
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
                async with serve_load(base, suite, prepared, load, say) as background:
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
                                result = await run_cell(
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


def _with_prefix(config: Config, prefix: str) -> Config:
    return dataclasses.replace(config, prefix=prefix)


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
