"""The seed study's HTTP design (bench/http_baseline.py) runs and answers every frame."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_http_baseline_serves_and_answers_every_frame() -> None:
    done = subprocess.run(
        [sys.executable, "bench/http_baseline.py", "--frames", "40", "--concurrency", "1,4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT http_fps_max=")
    assert "| 40 | 0 |" in done.stdout  # answered, errors, for each window
