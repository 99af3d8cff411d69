"""A ledger file: its schema, the checks that a file is ours, and the connections that
write it (:class:`edge_node.ledger.Ledger`) and read it (summaries, frame records).

The writer opens or creates the file in WAL mode; a reader opens it read-only, so
reading never creates, converts, checkpoints or locks out the edge still writing it.
Both refuse another application's SQLite file and a schema this camoffload does not
know, with a :class:`~pipeline.errors.LedgerError` (``not_a_ledger``,
``schema_version``); any other SQLite failure becomes one with ``reason="io"``.

Schema 2 added the ``detections`` column. The writer migrates a schema 1 file in place,
in one transaction, so runs keep appending to one file; a reader reads schema 1 as it
is (no ``detections`` column: every frame's is NULL) and never writes to it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from pipeline.errors import LedgerError

__all__ = ["has_run", "io_errors", "open_reader", "open_writer"]

# "CAML" in the file header tells our ledgers from other SQLite files; user_version
# numbers the schema below, so an older camoffload refuses a newer file instead of
# misreading it.
_APPLICATION_ID = 0x43414D4C
_SCHEMA_VERSION = 2
_READABLE = frozenset({1, _SCHEMA_VERSION})  # schema 1 lacks the detections column
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
    detections TEXT,
    PRIMARY KEY (run_id, frame_id),
    CHECK ((decision IS NULL) = (decided_ts IS NULL))
) WITHOUT ROWID
"""
# WITHOUT ROWID: the primary key is the table, so a commit dirties one b-tree page and
# no second index; it also serves the per-run scans of summaries and run lists.
# Schema 1 to 2: the detections column (compact JSON, see edge_node.ledger).
_MIGRATE_1_TO_2 = "ALTER TABLE frames ADD COLUMN detections TEXT"


@contextmanager
def io_errors(name: str) -> Iterator[None]:
    """SQLite's errors, as ours: an unreadable, locked or full file is the operator's to fix."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise LedgerError(f"{name}: {exc}", reason="io") from exc


def open_writer(path: Path | None, name: str) -> sqlite3.Connection:
    """An autocommit connection to ``path`` (created if missing; None: SQLite's private
    temporary database), its schema checked or created."""
    # isolation_level=None: autocommit, so every statement is its own committed
    # transaction and a capture is on disk before ``capture`` returns.
    target = "" if path is None else str(path)
    with io_errors(name):
        conn = sqlite3.connect(target, isolation_level=None)
    try:
        with io_errors(name):
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
    # A second edge creating or migrating the same file waits here, then finds it done.
    conn.execute("BEGIN IMMEDIATE")
    try:
        header = _header(conn, name)
        if header == _BLANK:
            conn.execute(_SCHEMA)
            conn.execute(f"PRAGMA application_id={_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        elif header[1] == 1:
            # Both statements are transactional: a failure leaves schema 1 untouched.
            conn.execute(_MIGRATE_1_TO_2)
            conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        conn.execute("COMMIT")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    _check_schema(_header(conn, name), name, readable=frozenset({_SCHEMA_VERSION}))


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


def _check_schema(
    header: tuple[int, int, int], name: str, *, readable: frozenset[int] = _READABLE
) -> None:
    app_id, version, _ = header
    if app_id != _APPLICATION_ID:
        raise LedgerError(f"{name} is not a camoffload ledger", reason="not_a_ledger")
    if version not in readable:
        known = ", ".join(str(v) for v in sorted(readable))
        raise LedgerError(
            f"{name} has ledger schema {version}; this camoffload reads schema {known}",
            reason="schema_version",
        )


@contextmanager
def open_reader(path: str | Path) -> Iterator[tuple[sqlite3.Connection, str]]:
    """A read-only connection to an existing ledger file, and the file's name for
    messages; SQLite's errors inside the block are raised as ours."""
    file = Path(path)
    name = str(file)
    if not file.is_file():
        raise LedgerError(f"{name}: no such ledger file", reason="not_a_ledger")
    # mode=ro: reading never creates, converts or checkpoints the file.
    with io_errors(name):
        conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
    with closing(conn), io_errors(name):
        _check_schema(_header(conn, name), name)
        yield conn, name


def has_run(conn: sqlite3.Connection, run_id: str) -> bool:
    query = "SELECT 1 FROM frames WHERE run_id = ? LIMIT 1"
    return conn.execute(query, (run_id,)).fetchone() is not None
