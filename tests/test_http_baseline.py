"""The seed study's HTTP design (bench/http_baseline.py) runs and answers every frame."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize(("processes", "payload"), [(1, "raw"), (2, "raw"), (1, "split")])
def test_the_http_baseline_serves_and_answers_every_frame(processes: int, payload: str) -> None:
    # Two processes: each pinned to a core, the client's requests spread over both.
    done = subprocess.run(
        [
            sys.executable,
            "bench/http_baseline.py",
            "--frames",
            "40",
            "--concurrency",
            "1,4",
            "--processes",
            str(processes),
            "--payload",
            payload,  # split: uint8 codes, each with its own X-Scale and X-Offset
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT http_fps_max=")
    assert done.stdout.count("| 40 | 0 |") == 2  # answered, errors, for each window
    assert f"({processes} process)" in done.stdout
