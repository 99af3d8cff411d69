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

The file itself (schema, header checks, connections) is :mod:`edge_node.ledger_file`;
summaries and run lists are :mod:`edge_node.ledger_summary`, re-exported here; frame by
frame reading is :mod:`edge_node.ledger_rows`.

A frame's ``detections`` (object detection's final answer) are compact JSON, a list of
``{"label": "person", "score": 0.91, "box": [x1, y1, x2, y2]}`` with the box normalised
to 0..1 and rounded to 4 decimals, the score to 3; NULL for a classification frame,
``[]`` for a detection frame that found nothing. An object a specialized model counted
(``edge.specialized``) has no ``box``: its score is the probability its label is there.

Errors::

    CamoffloadError
    └── LedgerError    reason: captured_twice, not_awaiting (unknown or decided frame),
                       run_exists, unknown_run, not_a_ledger, schema_version, io, closed,
                       bad_value (a detection that is not finite, in 0..1 or a box);
                       frame_id when one frame is at fault
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self, TypeAlias

from edge_node.ledger_file import has_run, io_errors, open_writer

# The summaries are re-exported: callers import the whole ledger surface from here.
from edge_node.ledger_summary import (
    LedgerSummary,
    RunInfo,
    list_runs,
    summarize,
    summarize_ledger_file,
)
from pipeline.errors import LedgerError
from pipeline.protocol import Decision

__all__ = [
    "Ledger",
    "LedgerCounts",
    "LedgerDetection",
    "LedgerError",
    "LedgerSummary",
    "RunInfo",
    "list_runs",
    "summarize_ledger_file",
]

logger = logging.getLogger(__name__)

# One detected object: label, score and box (x1, y1, x2, y2), all normalised to 0..1; a
# counted object (a specialized model's answer) has no box.
# (Plain tuples: pipeline.detection's Detection dataclass would make this module load numpy.)
LedgerDetection: TypeAlias = tuple[str, float, tuple[float, float, float, float] | None]

# The columns are edge_node.ledger_file's schema.
_INSERT = (
    "INSERT INTO frames (run_id, frame_id, seq, capture_ts, true_label) VALUES (?, ?, ?, ?, ?)"
)
_DECIDE = """
UPDATE frames SET decision = :decision, decided_ts = :decided_ts, label = :label,
    confidence = :confidence, bytes_sent = :bytes_sent, rtt_ms = :rtt_ms, detail = :detail,
    model = :model, local_label = :local_label, local_confidence = :local_confidence,
    payload = :payload, detections = :detections
WHERE run_id = :run_id AND frame_id = :frame_id AND decision IS NULL
"""


@dataclass(frozen=True, slots=True)
class LedgerCounts:
    captured: int
    decided: int
    offloaded: int


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
        self._conn: sqlite3.Connection | None = open_writer(self.path, self._name)
        with io_errors(self._name):
            clash = has_run(self._conn, self.run_id)
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
        detections: Sequence[LedgerDetection] | None = None,
    ) -> int | None:
        """Record the frame's final decision; returns its true label, if known.

        ``detections`` is a detection frame's answer (None: a classification frame); a
        score or box that is not finite or outside 0..1 is refused (``bad_value``) and
        the frame stays undecided."""
        if frame_id not in self._undecided:
            raise LedgerError(
                f"frame {frame_id} is not awaiting a decision (unknown or decided)",
                reason="not_awaiting",
                frame_id=frame_id,
            )
        encoded = None if detections is None else _encode_detections(detections, frame_id)
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
            "detections": encoded,
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
        with io_errors(self._name):
            return summarize(self._connection(), self.run_id)

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
        with io_errors(self._name):
            conn.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError(f"{self._name} is closed", reason="closed")
        return self._conn

    def _write_failed(self, frame_id: str, exc: sqlite3.Error) -> LedgerError:
        return LedgerError(
            f"{self._name}: cannot record frame {frame_id}: {exc}", reason="io", frame_id=frame_id
        )


def _encode_detections(detections: Sequence[LedgerDetection], frame_id: str) -> str:
    """The ledger's compact JSON for ``detections``; LedgerError(bad_value) if one is
    not a label, a score in 0..1 and a box (x1 <= x2, y1 <= y2) in 0..1."""
    objects: list[dict[str, object]] = []
    for i, detection in enumerate(detections):
        try:
            label, score, box = detection
            obj: dict[str, object] = {"label": label, "score": _unit(score, 3)}
            coords = None if box is None else [_unit(v, 4) for v in box]
        except (TypeError, ValueError) as exc:
            raise _bad_detection(frame_id, i, detection, str(exc)) from exc
        if not isinstance(label, str) or not label:
            raise _bad_detection(frame_id, i, detection, "the label is not a non-empty string")
        if coords is None:
            objects.append(obj)  # counted, not located
            continue
        obj["box"] = coords
        if len(coords) != 4 or coords[0] > coords[2] or coords[1] > coords[3]:
            raise _bad_detection(frame_id, i, detection, "the box is not [x1, y1, x2, y2]")
        objects.append(obj)
    return json.dumps(objects, separators=(",", ":"), allow_nan=False)


def _unit(value: float, digits: int) -> float:
    """``value`` rounded to ``digits``, if it is finite and then within 0..1."""
    number = round(float(value), digits) + 0.0  # + 0.0: no "-0.0" in the JSON
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise ValueError(f"{value!r} is not a finite number in 0..1")
    return number


def _bad_detection(frame_id: str, index: int, detection: object, why: str) -> LedgerError:
    return LedgerError(
        f"frame {frame_id}: detection {index} {detection!r} is refused: {why}",
        reason="bad_value",
        frame_id=frame_id,
    )


def _captured_twice(frame_id: str) -> LedgerError:
    return LedgerError(
        f"frame {frame_id} captured twice", reason="captured_twice", frame_id=frame_id
    )
