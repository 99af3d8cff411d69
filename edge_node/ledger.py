"""The edge's ledger: every captured frame gets exactly one final decision.

The record is an SQLite file in WAL mode with one row per frame, INSERTed at ``capture``
and UPDATEd once at ``decide``, each statement committed on its own. A crash of the
process (even SIGKILL) loses nothing recorded: every captured frame is on disk, decided
or visibly undecided (``decision IS NULL``). ``synchronous=NORMAL`` makes a commit a
write into the WAL without fsync, so a power cut may lose the last commits but never
corrupts the file. Every row carries its ``run_id``, so runs append to one file.

The edge calls ``capture`` and ``decide`` on its event loop, so each is one small
statement and its commit: about 15 µs (median) on a development VM's disk. The exception
is SQLite's automatic checkpoint, which copies the WAL back into the database with two
fsyncs every few hundred frames (about 4 ms there; slower storage such as an SD card
pays more). Checkpoints in another thread would free the loop but, under steady load,
never find the WAL quiet enough to restart it, so it would grow without bound. Closing
pays one last checkpoint, and ``summary()`` scans this run's rows: call it at the end.

Memory is bounded: Python holds only this run's undecided frames and a few counters;
summaries and round-trip percentiles come from SQL. ``Ledger()`` without a path uses
SQLite's private temporary database, kept in memory up to its page cache and spilled to
a temporary file beyond it, so a camera left running without a file cannot grow the heap.

Errors::

    CamoffloadError
    └── LedgerError    reason: captured_twice, not_awaiting (unknown or decided frame),
                       run_exists, unknown_run, not_a_ledger, schema_version, io, closed;
                       frame_id when one frame is at fault
"""

from __future__ import annotations

import logging
import math
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from pipeline.errors import LedgerError
from pipeline.protocol import Decision

__all__ = [
    "Ledger",
    "LedgerCounts",
    "LedgerError",
    "LedgerSummary",
    "RunInfo",
    "list_runs",
    "summarize_ledger_file",
]

logger = logging.getLogger(__name__)

# "CAML" in the file header tells our ledgers from other SQLite files; user_version
# numbers the schema below, so an older camoffload refuses a newer file instead of
# misreading it.
_APPLICATION_ID = 0x43414D4C
_SCHEMA_VERSION = 1
_BLANK = (0, 0, 0)  # application_id, user_version, schema objects of a new file
_SCHEMA = """
CREATE TABLE frames (
    run_id TEXT NOT NULL,
    frame_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    capture_ts REAL NOT NULL,
    true_label INTEGER,
    decision TEXT,
    decided_ts REAL,
    label INTEGER,
    confidence REAL,
    bytes_sent INTEGER,
    rtt_ms REAL,
    detail TEXT,
    model TEXT,
    local_label INTEGER,
    local_confidence REAL,
    payload TEXT,
    PRIMARY KEY (run_id, frame_id),
    CHECK ((decision IS NULL) = (decided_ts IS NULL))
) WITHOUT ROWID
"""
# WITHOUT ROWID: the primary key is the table, so a commit dirties one b-tree page and
# no second index; it also serves the per-run scans of summaries and run lists.
_INSERT = (
    "INSERT INTO frames (run_id, frame_id, seq, capture_ts, true_label) VALUES (?, ?, ?, ?, ?)"
)
_DECIDE = """
UPDATE frames SET decision = :decision, decided_ts = :decided_ts, label = :label,
    confidence = :confidence, bytes_sent = :bytes_sent, rtt_ms = :rtt_ms, detail = :detail,
    model = :model, local_label = :local_label, local_confidence = :local_confidence,
    payload = :payload
WHERE run_id = :run_id AND frame_id = :frame_id AND decision IS NULL
"""
_OFFLOADED = frozenset(d.value for d in Decision if d.offloaded)


@dataclass(frozen=True, slots=True)
class LedgerCounts:
    captured: int
    decided: int
    offloaded: int


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


class Ledger:
    """One run's ledger, appended to ``path`` (created if missing) or kept in a private
    temporary database. Not thread-safe: use it from the thread that made it."""

    def __init__(self, path: str | Path | None = None, *, run_id: str | None = None) -> None:
        self.run_id = secrets.token_hex(8) if run_id is None else run_id
        if not self.run_id:
            raise ValueError("run_id must not be empty")
        self.path = None if path is None else Path(path)
        self._name = "the in-memory ledger" if self.path is None else str(self.path)
        self._undecided: dict[str, int | None] = {}  # frame id -> its true label
        self._captured = 0
        self._decided = 0
        self._offloaded = 0
        self._conn: sqlite3.Connection | None = _open_writer(self.path, self._name)
        with _io_errors(self._name):
            clash = _has_run(self._conn, self.run_id)
        if clash:
            self.close()
            raise LedgerError(
                f"{self._name} already holds run {self.run_id!r}; a run is written once",
                reason="run_exists",
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def capture(
        self, frame_id: str, *, seq: int, capture_ts: float, true_label: int | None
    ) -> None:
        if frame_id in self._undecided:
            raise _captured_twice(frame_id)
        conn = self._connection()
        try:
            conn.execute(_INSERT, (self.run_id, frame_id, seq, capture_ts, true_label))
        except sqlite3.IntegrityError as exc:  # the primary key: decided earlier in this run
            raise _captured_twice(frame_id) from exc
        except sqlite3.Error as exc:
            raise self._write_failed(frame_id, exc) from exc
        self._undecided[frame_id] = true_label
        self._captured += 1

    def decide(
        self,
        frame_id: str,
        decision: Decision,
        *,
        decided_ts: float,
        label: int | None = None,
        confidence: float | None = None,
        bytes_sent: int = 0,
        rtt_ms: float | None = None,
        detail: str | None = None,
        model: str | None = None,
        local_label: int | None = None,
        local_confidence: float | None = None,
        payload: str | None = None,
    ) -> int | None:
        """Record the frame's final decision; returns its true label, if known."""
        if frame_id not in self._undecided:
            raise LedgerError(
                f"frame {frame_id} is not awaiting a decision (unknown or decided)",
                reason="not_awaiting",
                frame_id=frame_id,
            )
        row = {
            "run_id": self.run_id,
            "frame_id": frame_id,
            "decision": decision.value,
            "decided_ts": decided_ts,
            "label": label,
            "confidence": confidence,
            "bytes_sent": bytes_sent,
            "rtt_ms": rtt_ms,
            "detail": detail,
            "model": model,
            "local_label": local_label,
            "local_confidence": local_confidence,
            "payload": payload,
        }
        try:
            updated = self._connection().execute(_DECIDE, row).rowcount
        except sqlite3.Error as exc:
            raise self._write_failed(frame_id, exc) from exc
        if updated != 1:
            # Only another writer can cause this; the file no longer matches our memory.
            raise LedgerError(
                f"{self._name}: frame {frame_id} vanished or was decided by someone else",
                reason="io",
                frame_id=frame_id,
            )
        # Memory changes only after the commit, so a failed write leaves the frame
        # undecided in both places and the caller may try again.
        true_label = self._undecided.pop(frame_id)
        self._decided += 1
        if decision.offloaded:
            self._offloaded += 1
        return true_label

    @property
    def undecided(self) -> list[str]:
        return list(self._undecided)

    def counts(self) -> LedgerCounts:
        """Cheap running totals (no SQL), for periodic status messages."""
        return LedgerCounts(
            captured=self._captured, decided=self._decided, offloaded=self._offloaded
        )

    def summary(self) -> LedgerSummary:
        """This run's summary (a scan of its rows: call it at the end, not per frame)."""
        with _io_errors(self._name):
            return _summarize(self._connection(), self.run_id)

    def close(self) -> None:
        if self._conn is None:
            return
        if self._undecided:
            logger.warning(
                "ledger %s: run %s closed with %d undecided frames",
                self._name,
                self.run_id,
                len(self._undecided),
            )
        conn, self._conn = self._conn, None
        with _io_errors(self._name):
            conn.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError(f"{self._name} is closed", reason="closed")
        return self._conn

    def _write_failed(self, frame_id: str, exc: sqlite3.Error) -> LedgerError:
        return LedgerError(
            f"{self._name}: cannot record frame {frame_id}: {exc}", reason="io", frame_id=frame_id
        )


def summarize_ledger_file(path: str | Path, *, run_id: str | None = None) -> LedgerSummary:
    """Read-only summary of a ledger file: all its runs, or the one named. Safe while an
    edge is writing the file (WAL readers do not block the writer)."""
    with _reader(path) as (conn, name):
        if run_id is not None and not _has_run(conn, run_id):
            raise LedgerError(f"{name} has no run {run_id!r}", reason="unknown_run")
        return _summarize(conn, run_id)


def list_runs(path: str | Path) -> list[RunInfo]:
    """The runs in a ledger file, oldest first."""
    with _reader(path) as (conn, _):
        rows = conn.execute(
            "SELECT run_id, MIN(capture_ts), MAX(capture_ts), COUNT(*), COUNT(decision)"
            " FROM frames GROUP BY run_id ORDER BY MIN(capture_ts), run_id"
        ).fetchall()
    return [RunInfo(*row) for row in rows]


def _captured_twice(frame_id: str) -> LedgerError:
    return LedgerError(
        f"frame {frame_id} captured twice", reason="captured_twice", frame_id=frame_id
    )


@contextmanager
def _io_errors(name: str) -> Iterator[None]:
    """SQLite's errors, as ours: an unreadable, locked or full file is the operator's to fix."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise LedgerError(f"{name}: {exc}", reason="io") from exc


def _open_writer(path: Path | None, name: str) -> sqlite3.Connection:
    # isolation_level=None: autocommit, so every statement is its own committed
    # transaction and a capture is on disk before ``capture`` returns.
    target = "" if path is None else str(path)
    with _io_errors(name):
        conn = sqlite3.connect(target, isolation_level=None)
    try:
        with _io_errors(name):
            _prepare(conn, path, name)
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(conn: sqlite3.Connection, path: Path | None, name: str) -> None:
    # Refuse another application's file before touching it: journal_mode=WAL would
    # rewrite its header.
    if (header := _header(conn, name)) != _BLANK:
        _check_schema(header, name)
    if path is None:
        conn.execute("PRAGMA journal_mode=MEMORY")  # a temporary database has no crash to survive
    else:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise LedgerError(f"{name}: SQLite refused WAL mode ({mode})", reason="io")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("BEGIN IMMEDIATE")  # a second edge creating the same file waits here
    try:
        if _header(conn, name) == _BLANK:
            conn.execute(_SCHEMA)
            conn.execute(f"PRAGMA application_id={_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        conn.execute("COMMIT")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    _check_schema(_header(conn, name), name)


def _header(conn: sqlite3.Connection, name: str) -> tuple[int, int, int]:
    """(application_id, user_version, schema objects): ``_BLANK`` for a new file."""
    try:
        app_id: int = conn.execute("PRAGMA application_id").fetchone()[0]
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        objects: int = conn.execute("SELECT COUNT(*) FROM sqlite_schema").fetchone()[0]
    except sqlite3.DatabaseError as exc:  # random bytes: "file is not a database"
        raise LedgerError(
            f"{name} is not a camoffload ledger ({exc})", reason="not_a_ledger"
        ) from exc
    return app_id, version, objects


def _check_schema(header: tuple[int, int, int], name: str) -> None:
    app_id, version, _ = header
    if app_id != _APPLICATION_ID:
        raise LedgerError(f"{name} is not a camoffload ledger", reason="not_a_ledger")
    if version != _SCHEMA_VERSION:
        raise LedgerError(
            f"{name} has ledger schema {version}; this camoffload reads schema {_SCHEMA_VERSION}",
            reason="schema_version",
        )


@contextmanager
def _reader(path: str | Path) -> Iterator[tuple[sqlite3.Connection, str]]:
    file = Path(path)
    name = str(file)
    if not file.is_file():
        raise LedgerError(f"{name}: no such ledger file", reason="not_a_ledger")
    # mode=ro: reading never creates, converts or checkpoints the file.
    with _io_errors(name):
        conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
    with closing(conn), _io_errors(name):
        _check_schema(_header(conn, name), name)
        yield conn, name


def _has_run(conn: sqlite3.Connection, run_id: str) -> bool:
    query = "SELECT 1 FROM frames WHERE run_id = ? LIMIT 1"
    return conn.execute(query, (run_id,)).fetchone() is not None


def _summarize(conn: sqlite3.Connection, run_id: str | None) -> LedgerSummary:
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
