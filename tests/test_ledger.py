"""The SQLite ledger: exactly one decision per frame, on disk before the call returns,
readable after a crash; and ``camoffload ledger`` over real files."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import edge_node.ledger
from camoffload.ledger_commands import add_ledger_command, run_ledger_command
from edge_node.ledger import (
    Ledger,
    LedgerCounts,
    LedgerError,
    LedgerSummary,
    list_runs,
    summarize_ledger_file,
)
from pipeline.protocol import Decision

REPO = Path(__file__).resolve().parents[1]


def _capture(ledger: Ledger, n: int, *, start: int = 0, true_label: int | None = 1) -> None:
    for seq in range(start, start + n):
        ledger.capture(f"f{seq}", seq=seq, capture_ts=1000.0 + seq, true_label=true_label)


# -- exactly one decision ------------------------------------------------------------


def test_a_frame_is_captured_once(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.capture("a", seq=0, capture_ts=1.0, true_label=3)
        with pytest.raises(LedgerError) as undecided:
            ledger.capture("a", seq=0, capture_ts=1.0, true_label=3)
        ledger.decide("a", Decision.LOCAL, decided_ts=2.0, label=3)
        # Decided frames leave memory; the file's primary key still refuses them.
        with pytest.raises(LedgerError) as decided:
            ledger.capture("a", seq=5, capture_ts=9.0, true_label=None)
        assert ledger.counts().captured == 1
    assert undecided.value.reason == decided.value.reason == "captured_twice"
    assert decided.value.frame_id == "a"
    assert summarize_ledger_file(tmp_path / "l.db").captured == 1


def test_decide_refuses_unknown_and_decided_frames_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger(path) as ledger:
        ledger.capture("a", seq=0, capture_ts=1.0, true_label=7)
        assert ledger.decide("a", Decision.CLOUD, decided_ts=2.0, label=7, rtt_ms=5.0) == 7
        with pytest.raises(LedgerError) as twice:
            ledger.decide("a", Decision.LOCAL, decided_ts=3.0, label=1)
        with pytest.raises(LedgerError) as unknown:
            ledger.decide("nope", Decision.LOCAL, decided_ts=3.0)
        assert ledger.counts() == LedgerCounts(1, 1, 1)
        assert ledger.undecided == []
    assert twice.value.reason == unknown.value.reason == "not_awaiting"
    assert unknown.value.frame_id == "nope"
    on_disk = summarize_ledger_file(path)
    assert on_disk.by_decision == {"cloud": 1}
    assert (on_disk.correct, on_disk.rtt_ms_p50) == (1, 5.0)


def test_decide_returns_the_true_label_and_keeps_only_undecided_frames(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.capture("a", seq=0, capture_ts=1.0, true_label=4)
        ledger.capture("b", seq=1, capture_ts=1.1, true_label=None)
        ledger.capture("c", seq=2, capture_ts=1.2, true_label=0)
        assert ledger.undecided == ["a", "b", "c"]
        assert ledger.decide("b", Decision.DROPPED, decided_ts=2.0) is None
        assert ledger.decide("c", Decision.SKIPPED, decided_ts=2.0) == 0
        assert ledger.undecided == ["a"]
        assert ledger.counts() == LedgerCounts(3, 2, 0)


def test_a_closed_ledger_refuses_writes_and_closes_twice(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    ledger.close()
    ledger.close()
    with pytest.raises(LedgerError) as closed:
        ledger.capture("a", seq=0, capture_ts=1.0, true_label=None)
    assert closed.value.reason == "closed"


def test_without_a_path_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with Ledger() as ledger:
        _capture(ledger, 3)
        ledger.decide("f0", Decision.CLOUD, decided_ts=2.0, label=1, bytes_sent=10, rtt_ms=4.0)
        summary = ledger.summary()
    assert (summary.captured, summary.decided, summary.bytes_sent) == (3, 1, 10)
    assert (summary.accuracy, summary.rtt_ms_p95) == (1.0, 4.0)
    assert list(tmp_path.iterdir()) == []


# -- the file ------------------------------------------------------------------------


def test_the_file_is_a_versioned_wal_database(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger(path, run_id="r1") as ledger:
        _capture(ledger, 1)
        with sqlite3.connect(path) as other:  # what another process sees, before close
            assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert other.execute("PRAGMA user_version").fetchone() == (2,)
            assert other.execute("SELECT run_id, frame_id, decision FROM frames").fetchall() == [
                ("r1", "f0", None)
            ]
        other.close()
        assert summarize_ledger_file(path).undecided == 1  # readable while being written


def test_runs_persist_across_reopen_and_append(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger(path, run_id="first") as ledger:
        _capture(ledger, 2)
        for frame in ("f0", "f1"):
            ledger.decide(frame, Decision.LOCAL, decided_ts=2000.0, label=1)
    with Ledger(path, run_id="second") as ledger:
        _capture(ledger, 3, start=10, true_label=2)
        ledger.decide("f10", Decision.CLOUD, decided_ts=3000.0, label=0, bytes_sent=500)
        # A run's own summary and counters ignore the runs before it.
        assert ledger.summary().captured == 3
        assert ledger.counts().captured == 3
        this_run = ledger.summary()
    assert this_run == summarize_ledger_file(path, run_id="second")
    everything = summarize_ledger_file(path)
    assert (everything.captured, everything.decided, everything.undecided) == (5, 3, 2)
    assert everything.by_decision == {"local": 2, "cloud": 1}
    runs = list_runs(path)
    assert [(r.run_id, r.frames, r.decided, r.undecided) for r in runs] == [
        ("first", 2, 2, 0),
        ("second", 3, 1, 2),
    ]
    assert runs[1].first_capture_ts == 1010.0


def test_a_run_id_is_written_once(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger(path, run_id="cam") as ledger:
        _capture(ledger, 1)
    with pytest.raises(LedgerError) as again:
        Ledger(path, run_id="cam")
    assert again.value.reason == "run_exists"
    with pytest.raises(LedgerError) as unknown:
        summarize_ledger_file(path, run_id="other")
    assert unknown.value.reason == "unknown_run"


# The child loads ledger.py on its own: the edge_node package imports torch, which
# this test does not need to pay for a second time.
_CRASHING_CHILD = """
import importlib.util, os, signal, sys
spec = importlib.util.spec_from_file_location("ledger_child", sys.argv[1])
ledger_mod = importlib.util.module_from_spec(spec)
sys.modules["ledger_child"] = ledger_mod
spec.loader.exec_module(ledger_mod)
from pipeline.protocol import Decision
ledger = ledger_mod.Ledger(sys.argv[2], run_id="crashed")
for seq in range(5):
    ledger.capture(f"f{seq}", seq=seq, capture_ts=100.0 + seq, true_label=seq)
for seq in range(3):
    ledger.decide(f"f{seq}", Decision.CLOUD, decided_ts=200.0, label=seq, rtt_ms=10.0)
os.kill(os.getpid(), signal.SIGKILL)  # no close, no atexit, no flush
"""


def test_a_killed_edge_leaves_every_captured_frame_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    child = subprocess.run(
        [sys.executable, "-c", _CRASHING_CHILD, edge_node.ledger.__file__, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    crashed = summarize_ledger_file(path)
    assert (crashed.captured, crashed.decided, crashed.undecided) == (5, 3, 2)
    assert (crashed.answered, crashed.correct) == (3, 3)

    # The next run appends; the crashed run's frames stay visibly undecided.
    with Ledger(path, run_id="next") as ledger:
        _capture(ledger, 1)
        ledger.decide("f0", Decision.LOCAL, decided_ts=300.0)
        assert ledger.summary().undecided == 0
    both = summarize_ledger_file(path)
    assert (both.captured, both.decided, both.undecided) == (6, 4, 2)
    assert summarize_ledger_file(path, run_id="crashed").undecided == 2
    assert [(r.run_id, r.undecided) for r in list_runs(path)] == [("crashed", 2), ("next", 0)]


def test_random_bytes_are_not_a_ledger(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(os.urandom(4096))
    before = path.read_bytes()
    with pytest.raises(LedgerError) as reading:
        summarize_ledger_file(path)
    with pytest.raises(LedgerError) as writing:
        Ledger(path)
    assert reading.value.reason == writing.value.reason == "not_a_ledger"
    assert path.read_bytes() == before


def test_another_schema_is_refused_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE frames (id INTEGER)")
    conn.close()
    newer = tmp_path / "newer.db"
    with Ledger(newer):
        pass
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version=3")
    conn.close()
    before = foreign.read_bytes()
    for path, reason in ((foreign, "not_a_ledger"), (newer, "schema_version")):
        with pytest.raises(LedgerError) as writing:
            Ledger(path)
        with pytest.raises(LedgerError) as reading:
            list_runs(path)
        assert writing.value.reason == reading.value.reason == reason
    assert foreign.read_bytes() == before
    assert "schema 3" in str(reading.value)


def test_a_missing_file_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(LedgerError, match="no such ledger file"):
        summarize_ledger_file(path)
    assert not path.exists()


# -- the figures ---------------------------------------------------------------------

# (true_label, decision, label, bytes_sent, rtt_ms) per frame; one more frame stays
# undecided. By hand: 7 decided, 4 offloaded (3 cloud + 1 timeout), 4,200 bytes;
# labelled are f0, f1, f2, f4 (f3 has no true label, f5/f6 no answer), correct f0, f2,
# f4: accuracy 3/4. Round trips 30, 10, 20: nearest-rank p50 = 20, p95 = 30.
_FRAMES = [
    (1, Decision.CLOUD, 1, 1000, 30.0),
    (2, Decision.CLOUD, 0, 1200, 10.0),
    (0, Decision.LOCAL_AFTER_TIMEOUT, 0, 900, None),
    (None, Decision.CLOUD, 5, 1100, 20.0),
    (3, Decision.LOCAL, 3, 0, None),
    (4, Decision.SKIPPED, None, 0, None),
    (1, Decision.DROPPED, None, 0, None),
]


def _figures_ledger(path: Path) -> LedgerSummary:
    with Ledger(path, run_id="figures") as ledger:
        for seq, (true_label, *_) in enumerate(_FRAMES):
            ledger.capture(f"f{seq}", seq=seq, capture_ts=50.0 + seq, true_label=true_label)
        ledger.capture("f7", seq=7, capture_ts=60.0, true_label=2)
        for seq, (_, decision, label, sent, rtt) in enumerate(_FRAMES):
            ledger.decide(
                f"f{seq}", decision, decided_ts=70.0, label=label, bytes_sent=sent, rtt_ms=rtt
            )
        return ledger.summary()


def test_summary_figures_match_hand_computed_values(tmp_path: Path) -> None:
    summary = _figures_ledger(tmp_path / "l.db")
    assert (summary.captured, summary.decided, summary.undecided) == (8, 7, 1)
    assert list(summary.by_decision.items()) == [
        ("local", 1),
        ("cloud", 3),
        ("local-after-timeout", 1),
        ("skipped", 1),
        ("dropped", 1),
    ]
    assert (summary.offloaded, summary.answered, summary.timed_out) == (4, 3, 1)
    assert summary.offload_share == pytest.approx(4 / 7)
    assert summary.bytes_sent == 4200
    assert (summary.labelled, summary.correct, summary.accuracy) == (4, 3, 0.75)
    assert (summary.rtt_ms_p50, summary.rtt_ms_p95) == (20.0, 30.0)
    assert summarize_ledger_file(tmp_path / "l.db") == summary


def test_percentiles_sort_by_value_not_by_arrival(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        _capture(ledger, 20)
        for seq in range(20):  # 20 ms first, 1 ms last
            ledger.decide(f"f{seq}", Decision.CLOUD, decided_ts=9.0, rtt_ms=float(20 - seq))
        summary = ledger.summary()
    # Nearest rank over 1..20: p50 is the 10th value, p95 the 19th.
    assert (summary.rtt_ms_p50, summary.rtt_ms_p95) == (10.0, 19.0)


def test_an_empty_summary_has_no_ratios() -> None:
    with Ledger() as ledger:
        summary = ledger.summary()
    assert summary == LedgerSummary(0, 0, 0, 0, {}, None, None, 0, 0, 0)
    assert (summary.accuracy, summary.offload_share) == (None, None)


# -- camoffload ledger ---------------------------------------------------------------


def _run_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="camoffload")
    add_ledger_command(parser.add_subparsers(dest="command", required=True))
    return run_ledger_command(parser.parse_args(argv))


def test_summary_command_prints_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "l.db"
    _figures_ledger(path)
    assert _run_command(["ledger", "summary", str(path)]) == 0
    out, err = capsys.readouterr()
    rows = [line.split() for line in out.splitlines()]
    assert err == ""
    assert out.splitlines()[0] == f"ledger {path}, all runs"
    assert ["cloud", "3", "42.9%"] in rows  # of 7 decided
    assert ["undecided", "1", "(crashed", "or", "running)"] in rows
    assert ["offloaded", "4", "57.1%"] in rows
    assert ["accuracy", "75.0%", "(3", "of", "4", "labelled)"] in rows
    assert ["bytes", "sent", "4,200"] in rows
    assert ["round", "trip", "p50", "20.0", "ms"] in rows
    assert ["round", "trip", "p95", "30.0", "ms"] in rows


def test_summary_command_json_for_one_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "l.db"
    _figures_ledger(path)
    with Ledger(path, run_id="later") as ledger:
        _capture(ledger, 2)
    assert _run_command(["ledger", "summary", str(path), "--run", "figures", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run_id"] == "figures"
    assert (data["captured"], data["undecided"], data["bytes_sent"]) == (8, 1, 4200)
    assert data["accuracy"] == 0.75
    assert data["offload_share"] == pytest.approx(4 / 7)
    assert data["by_decision"]["cloud"] == 3


def test_runs_command_lists_runs_oldest_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "l.db"
    with Ledger(path, run_id="late") as ledger:
        ledger.capture("x", seq=0, capture_ts=2_000_000_000.0, true_label=None)
    with Ledger(path, run_id="early") as ledger:
        _capture(ledger, 2)
        ledger.decide("f0", Decision.LOCAL, decided_ts=1.0)
    assert _run_command(["ledger", "runs", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "run",
        "first",
        "capture",
        "(UTC)",
        "frames",
        "decided",
        "undecided",
    ]
    assert lines[1].split() == ["early", "1970-01-01", "00:16:40", "2", "1", "1"]
    assert lines[2].split() == ["late", "2033-05-18", "03:33:20", "1", "0", "1"]
    assert _run_command(["ledger", "runs", str(path), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [(r["run_id"], r["undecided"]) for r in runs] == [("early", 1), ("late", 1)]


@pytest.mark.parametrize("kind", ["missing", "random bytes", "unknown run"])
def test_command_errors_are_one_line_and_exit_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    path = tmp_path / "l.db"
    argv = ["ledger", "summary", str(path)]
    if kind == "random bytes":
        path.write_bytes(os.urandom(2048))
    elif kind == "unknown run":
        with Ledger(path, run_id="only"):
            pass
        argv += ["--run", "other"]
    assert _run_command(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"camoffload ledger: error: {path}")


def test_decide_never_overwrites_a_decision_made_behind_its_back(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger(path, run_id="r") as ledger:
        _capture(ledger, 1)
        with sqlite3.connect(path) as other:
            other.execute("UPDATE frames SET decision = 'skipped', decided_ts = 1.0")
        other.close()
        with pytest.raises(LedgerError, match="decided by someone else"):
            ledger.decide("f0", Decision.CLOUD, decided_ts=2.0)
    assert summarize_ledger_file(path).by_decision == {"skipped": 1}
