"""The evaluation harness end to end: a tiny suite through a real Mosquitto, real worker
processes, the shaping proxy and a background load; its report and published section."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from broker import BrokerInfo
from camoffload.eval.load import LoadCounts, run_load
from camoffload.eval.report import load_results, publish, render_report
from camoffload.eval.runner import run_suite
from camoffload.eval.suite import parse_suite
from cloud_worker import stages as worker_module
from pipeline.config import Config, load_config
from pipeline.errors import ConfigError
from tests._helpers import running_worker

TINY = """
name = "tiny"
title = "A tiny suite"
analysis = "crossover"
paper = "none: a test"

[run]
frames = 30
rate = 50
deadline_ms = 1000
slo_ms = 200
warmup_s = 0.3

[data.fmnist]
source = "fashion-mnist:test"
cloud_model = "fmnist_exit_resnet"
local_model = "fmnist_exit_resnet"

[strategies.local-only]
policy = "local-only"

[strategies.cloud-only]
policy = "cloud-only"

[strategies.half-local]
coverage = 0.5

[links.direct]
profile = "direct"

[links.slow]
profile = "rate=2mbit,delay=30ms"

[loads.busy]
edges = 2
rate = 50
"""


@pytest.mark.slow
def test_a_tiny_suite_runs_end_to_end_and_reports(mosquitto: BrokerInfo, tmp_path: Path) -> None:
    suite = parse_suite(TINY)
    out = tmp_path / "run"
    lines: list[str] = []
    run = asyncio.run(run_suite(suite, out, broker_url=mosquitto.url, progress=lines.append))

    assert len(run.cells) == suite.size == 6
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    assert [(c["link"], c["strategy"]) for c in cells] == [
        (link, s) for link in ("direct", "slow") for s in ("local-only", "cloud-only", "half-local")
    ]
    by = {(c["link"], c["strategy"]): c for c in cells}
    for c in cells:
        assert c["frames"] == 30
        assert c["undecided"] == 0
    # The strategies really differ: nothing offloaded, everything, about half.
    assert by["direct", "local-only"]["offload_share"] == 0
    assert by["direct", "cloud-only"]["cloud_share"] > 0.9
    assert 0.3 <= by["direct", "half-local"]["offload_share"] <= 0.7
    assert by["direct", "half-local"]["settings"]["confidence_threshold"] > 0
    # The shaped link's 60 ms round trip (30 ms each way) shows in the cloud answers'
    # round trips. Not in the latency over all frames: under the busy load some frames
    # are held back and answered locally at once, and how many varies from run to run.
    assert by["slow", "cloud-only"]["rtt_p50_ms"] > by["direct", "cloud-only"]["rtt_p50_ms"] + 40
    # Every captured frame of every cell has exactly one decision in the ledger.
    with sqlite3.connect(out / "ledger.sqlite") as db:
        rows = db.execute(
            "SELECT run_id, COUNT(*), COUNT(decision) FROM frames GROUP BY run_id"
        ).fetchall()
    assert len(rows) == 6
    assert all(n == decided == 30 for _, n, decided in rows)
    frames = (out / "frames.jsonl").read_text().splitlines()
    assert len(frames) == 6 * 30
    meta = json.loads((out / "meta.json").read_text())
    assert meta["background_load"]["fmnist/busy"]["answered"] > 0

    report = render_report(out)
    text = report.read_text()
    assert "A tiny suite" in text
    assert "Winner by timely accuracy" in text
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert len(plots) >= 4
    assert all((out / "plots" / p).stat().st_size > 5000 for p in plots)

    # Publishing replaces the suite's own section and leaves the rest of the file alone.
    results_md = tmp_path / "docs" / "results.md"
    results_md.parent.mkdir()
    results_md.write_text("# Results\n\nHand-written intro.\n")
    publish(out, results_md)
    publish(out, results_md)
    published = results_md.read_text()
    assert published.count("<!-- suite:tiny -->") == 1
    assert "Hand-written intro." in published
    assert "![Latency CDFs](img/results/tiny/latency_cdf.png)" in published
    assert (results_md.parent / "img/results/tiny/latency_cdf.png").is_file()
    assert load_results(out).suite.name == "tiny"


def test_a_results_folder_without_results_is_a_clear_error(tmp_path: Path) -> None:
    from pipeline.errors import CamoffloadError

    with pytest.raises(CamoffloadError, match="not a complete results folder"):
        render_report(tmp_path)


def test_background_load_offers_frames_and_counts_every_one(config: Config) -> None:
    config = load_config(
        env={},
        overrides=[
            f"broker.url={config.broker.url}",
            f"prefix={config.prefix}",
            "worker.model=fmnist_exit_resnet",
            "edge.model=fmnist_exit_resnet",
        ],
    )

    async def scenario() -> LoadCounts:
        async with running_worker(config):
            return await run_load(
                config, edges=2, rate=40, source="fashion-mnist:train:64", deadline_ms=2000,
                duration_s=1.5,
            )  # fmt: skip

    counts = asyncio.run(scenario())
    assert counts.sent >= 40  # 2 edges x 40/s x 1.5 s, less start-up
    assert counts.answered > 0
    assert counts.sent == counts.answered + counts.refused + counts.lost


def test_worker_slowdown_stretches_each_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_batch(decoded: object, classifier: object, worker_id: str) -> list:  # type: ignore[type-arg]
        time.sleep(0.02)
        return []

    monkeypatch.setattr(worker_module, "classify_batch", fake_batch)
    started = time.monotonic()
    worker_module.classify_slowed(None, None, "w", 3.0)  # type: ignore[arg-type]
    assert time.monotonic() - started >= 0.058  # 3 x 20 ms; load only makes it longer


def test_worker_slowdown_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"worker\.slowdown"):
        load_config(env={}, overrides=["worker.slowdown=0.5"])


@pytest.mark.slow
def test_a_stopped_run_keeps_whole_cells_and_decides_every_frame(
    mosquitto: BrokerInfo, tmp_path: Path
) -> None:
    suite = parse_suite(
        TINY.replace('[links.slow]\nprofile = "rate=2mbit,delay=30ms"\n', "")
        .replace("[loads.busy]\nedges = 2\nrate = 50\n", "[loads.idle]\n")
        .replace("frames = 30", "frames = 60")
    )
    out = tmp_path / "run"

    async def scenario() -> None:
        stop = asyncio.Event()

        def progress(line: str) -> None:
            if line.startswith("[2/"):
                # As Ctrl-C does, half a second into the second cell.
                asyncio.get_running_loop().call_later(0.5, stop.set)

        run = await run_suite(suite, out, broker_url=mosquitto.url, progress=progress, stop=stop)
        assert not run.meta["complete"]
        assert [c.strategy for c in run.cells] == ["local-only", "cloud-only"]

    asyncio.run(scenario())
    with sqlite3.connect(out / "ledger.sqlite") as db:
        rows = db.execute(
            "SELECT run_id, COUNT(*), COUNT(decision) FROM frames GROUP BY run_id"
        ).fetchall()
    assert len(rows) == 2
    assert all(n == decided for _, n, decided in rows)  # nothing left undecided
    counts = {run_id: n for run_id, n, _ in rows}
    assert counts["fmnist/idle/direct/local-only"] == 60
    assert 0 < counts["fmnist/idle/direct/cloud-only"] < 60  # stopped part-way
