"""The seed study's HTTP design (camoffload/perf/http_baseline.py, what ``camoffload
bench`` runs beside the pipeline) serves and answers every frame."""

from __future__ import annotations

import asyncio

import pytest

from camoffload.perf.http_baseline import Row, drive_http, http_servers
from camoffload.perf.workload import PayloadKind, make_workload
from pipeline.inference import Classifier

MODEL = "fmnist_exit_resnet"


async def _serve_and_drive(payload: PayloadKind, processes: int) -> list[Row]:
    workload = make_workload(payload, Classifier.by_name(MODEL, "cpu"), 40)
    async with http_servers(MODEL, processes) as urls:
        assert len(urls) == processes
        return [await drive_http(urls, workload, window) for window in (1, 4)]


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize(("processes", "payload"), [(1, "raw"), (2, "raw"), (1, "split")])
def test_the_http_baseline_serves_and_answers_every_frame(
    processes: int, payload: PayloadKind
) -> None:
    # Two processes: each pinned to a core, the client's requests spread over both.
    # split: uint8 codes, each with its own X-Scale and X-Offset.
    rows = asyncio.run(_serve_and_drive(payload, processes))
    for row, window in zip(rows, (1, 4), strict=True):
        assert row.concurrency == window
        assert (row.answered, row.errors) == (40, 0)
        assert row.frames_per_s > 0
        assert row.accuracy > 0.7  # the model's answers came back, not placeholders
