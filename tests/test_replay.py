"""``camoffload replay`` as a user runs it: a real process, a progress bar, a ledger."""

from __future__ import annotations

import operator
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker import BrokerInfo
from camoffload.demo import default_video
from camoffload.replay import default_ledger_path
from edge_node import open_source

# Above the replay subprocess's 240 s bound, so that one fails first, with its output.
pytestmark = pytest.mark.timeout(300)


def _replay(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "camoffload", "replay", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,  # under the tests' own 300 s (pytestmark)
        check=False,
    )


def _decisions(ledger: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(ledger) as db:
        return db.execute("SELECT COUNT(*), COUNT(decision) FROM frames").fetchall()


@pytest.mark.slow
def test_replaying_the_clip_shows_progress_and_ledgers_every_frame(
    mosquitto: BrokerInfo, prefix: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "replay.sqlite"
    done = _replay(
        [
            str(default_video()), "--frames", "24", "--rate", "max",
            "--broker", mosquitto.url, "--set", f"prefix={prefix}", "--workers", "1",
            "--link", "rate=50mbit,delay=5ms", "--ledger", str(ledger),
        ],
        tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "24/24" in done.stderr  # the progress bar reached the end
    assert "frame/s" in done.stderr
    assert "decided exactly once  yes" in done.stdout, done.stdout
    assert f"ledger                {ledger}" in done.stdout
    assert _decisions(ledger) == [(24, 24)]


@pytest.mark.slow
def test_replay_starts_its_own_broker_and_worker(tmp_path: Path) -> None:
    done = _replay(
        [
            "fashion-mnist:test:40", "--model", "fmnist_exit_resnet",
            "--local-model", "fmnist_exit_resnet", "--policy", "threshold",
            "--no-progress",
        ],
        tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "frame/s" not in done.stderr  # --no-progress
    ledgers = list((tmp_path / "results").glob("replay-*.sqlite"))
    assert len(ledgers) == 1
    assert _decisions(ledgers[0]) == [(40, 40)]
    assert "accuracy" in done.stdout


def test_replay_on_its_own_broker_needs_a_worker(tmp_path: Path) -> None:
    done = _replay(["fashion-mnist:test:5", "--workers", "0", "--no-progress"], tmp_path)
    assert done.returncode == 1
    assert "needs --workers >= 1" in done.stderr


def test_default_ledger_path_names_source_and_time() -> None:
    when = datetime(2026, 11, 23, 12, 0, 5, tzinfo=UTC)
    assert default_ledger_path("/data/vtest.avi", when) == Path(
        "results/replay-vtest-20261123-120005.sqlite"
    )
    assert default_ledger_path("fashion-mnist:test:40", when).name.startswith(
        "replay-fashion-mnist-test-40-"
    )


def test_sources_hint_their_length_for_the_progress_bar(tmp_path: Path) -> None:
    video = open_source(str(default_video()))
    try:
        assert operator.length_hint(video) == 150  # the shipped clip's frames
        video.read()
        assert operator.length_hint(video) == 149
    finally:
        video.close()
    assert operator.length_hint(open_source("fashion-mnist:test:12")) == 12
