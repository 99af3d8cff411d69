"""Summaries of a ledger: one run's (for the edge at the end of a run) or a file's
(``camoffload ledger summary``), and the list of runs in a file.

Everything comes from SQL, so a summary costs no memory per frame: counts per decision
from one ``GROUP BY``, round-trip percentiles from SQLite's bounded-memory sort. File
readers use a read-only connection (:func:`edge_node.ledger_file.open_reader`), safe
while an edge is writing the file.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from edge_node.ledger_file import has_run, open_reader
from pipeline.errors import LedgerError
from pipeline.protocol import Decision

__all__ = ["LedgerSummary", "RunInfo", "list_runs", "summarize", "summarize_ledger_file"]

_OFFLOADED = frozenset(d.value for d in Decision if d.offloaded)


@dataclass(frozen=True, slots=True)
class LedgerSummary:
    captured: int
    decided: int
    undecided: int
    offloaded: int
    by_decision: dict[str, int]
    rtt_ms_p50: float | None
    rtt_ms_p95: float | None
    bytes_sent: int  # over decided frames
    labelled: int  # decided frames with both a true label and an answer
    correct: int  # of those, the answer was the true label

    @property
    def answered(self) -> int:
        return self.by_decision.get(Decision.CLOUD.value, 0)

    @property
    def timed_out(self) -> int:
        return self.by_decision.get(Decision.LOCAL_AFTER_TIMEOUT.value, 0)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    @property
    def offload_share(self) -> float | None:
        return self.offloaded / self.decided if self.decided else None


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    first_capture_ts: float
    last_capture_ts: float
    frames: int
    decided: int

    @property
    def undecided(self) -> int:
        return self.frames - self.decided


def summarize_ledger_file(path: str | Path, *, run_id: str | None = None) -> LedgerSummary:
    """Read-only summary of a ledger file: all its runs, or the one named. Safe while an
    edge is writing the file (WAL readers do not block the writer)."""
    with open_reader(path) as (conn, name):
        if run_id is not None and not has_run(conn, run_id):
            raise LedgerError(f"{name} has no run {run_id!r}", reason="unknown_run")
        return summarize(conn, run_id)


def list_runs(path: str | Path) -> list[RunInfo]:
    """The runs in a ledger file, oldest first."""
    with open_reader(path) as (conn, _):
        rows = conn.execute(
            "SELECT run_id, MIN(capture_ts), MAX(capture_ts), COUNT(*), COUNT(decision)"
            " FROM frames GROUP BY run_id ORDER BY MIN(capture_ts), run_id"
        ).fetchall()
    return [RunInfo(*row) for row in rows]


def summarize(conn: sqlite3.Connection, run_id: str | None) -> LedgerSummary:
    """The summary of ``run_id`` (None: of every run) on an open ledger connection."""
    # One read transaction: the counts and percentiles come from one snapshot even while
    # an edge appends to the file.
    conn.execute("BEGIN")
    try:
        return _summarize_snapshot(conn, run_id)
    finally:
        conn.execute("COMMIT")


def _summarize_snapshot(conn: sqlite3.Connection, run_id: str | None) -> LedgerSummary:
    # Constant fragments only; the run id is always a bound parameter.
    where, params = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
    rows = conn.execute(
        "SELECT decision, COUNT(*), TOTAL(bytes_sent), COUNT(rtt_ms),"  # noqa: S608
        " SUM(label IS NOT NULL AND true_label IS NOT NULL), SUM(label = true_label)"
        f" FROM frames {where} GROUP BY decision",
        params,
    ).fetchall()
    by_decision: dict[str, int] = {}
    captured = bytes_sent = rtts = labelled = correct = 0
    for decision, frames, sent, rtt_count, with_label, right in rows:
        captured += frames
        rtts += rtt_count
        if decision is not None:  # undecided rows have no bytes, labels or round trip
            by_decision[decision] = frames
            bytes_sent += int(sent)
            labelled += with_label or 0
            correct += right or 0
    # Enum order first; a decision from a newer camoffload still shows, at the end.
    order = [d.value for d in Decision] + sorted(set(by_decision) - {d.value for d in Decision})
    decided = sum(by_decision.values())
    rtt_where = f"{where} AND" if where else "WHERE"
    return LedgerSummary(
        captured=captured,
        decided=decided,
        undecided=captured - decided,
        offloaded=sum(n for d, n in by_decision.items() if d in _OFFLOADED),
        by_decision={d: by_decision[d] for d in order if d in by_decision},
        rtt_ms_p50=_nth_rtt(conn, rtt_where, params, _rank(50, rtts)),
        rtt_ms_p95=_nth_rtt(conn, rtt_where, params, _rank(95, rtts)),
        bytes_sent=bytes_sent,
        labelled=labelled,
        correct=correct,
    )


def _rank(q: float, n: int) -> int | None:
    """The nearest-rank percentile's 0-based index in ``n`` sorted values."""
    return max(0, math.ceil(q / 100 * n) - 1) if n else None


def _nth_rtt(
    conn: sqlite3.Connection, where: str, params: tuple[str, ...], rank: int | None
) -> float | None:
    if rank is None:
        return None
    # SQLite sorts in bounded memory (spilling to a temporary file), unlike a Python list.
    row = conn.execute(
        f"SELECT rtt_ms FROM frames {where} rtt_ms IS NOT NULL"  # noqa: S608
        " ORDER BY rtt_ms LIMIT 1 OFFSET ?",
        (*params, rank),
    ).fetchone()
    return None if row is None else float(row[0])
