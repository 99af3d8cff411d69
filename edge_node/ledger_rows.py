"""Reading a ledger file's frames back, one record per frame, for analysis and export.

Reads with a read-only connection (see ``edge_node.ledger_file``), so it never changes,
checkpoints or locks out the edge still writing the file. Columns a newer schema adds
are kept in ``extra``; a record is a plain row, not a live view. ``detections`` is parsed
from its JSON (see :mod:`edge_node.ledger`); a schema 1 file has none, so it is None.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_node.ledger_file import open_reader
from pipeline.errors import LedgerError

__all__ = ["FrameRecord", "iter_frames"]

_KNOWN = (
    "run_id", "frame_id", "seq", "capture_ts", "true_label", "decision", "decided_ts",
    "label", "confidence", "bytes_sent", "rtt_ms", "detail", "model", "local_label",
    "local_confidence", "payload", "detections",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class FrameRecord:
    run_id: str
    frame_id: str
    seq: int
    capture_ts: float
    true_label: int | None
    decision: str | None  # None: captured, never decided (a crash)
    decided_ts: float | None
    label: int | None
    confidence: float | None
    bytes_sent: int | None
    rtt_ms: float | None
    detail: str | None
    model: str | None
    local_label: int | None
    local_confidence: float | None
    payload: str | None
    # None: a classification frame (or a schema 1 file); []: a detection frame, nothing found
    detections: list[dict[str, object]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def latency_ms(self) -> float | None:
        """Capture to final decision."""
        if self.decided_ts is None:
            return None
        return (self.decided_ts - self.capture_ts) * 1000

    @property
    def people(self) -> int | None:
        """How many people were detected; None for a frame without detections."""
        if self.detections is None:
            return None
        return sum(1 for obj in self.detections if obj.get("label") == "person")


def iter_frames(path: str | Path, *, run_id: str | None = None) -> Iterator[FrameRecord]:
    """Every frame of ``run_id`` (or of every run) in capture order."""
    with open_reader(path) as (conn, name):
        where, params = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
        cursor = conn.execute(f"SELECT * FROM frames {where} ORDER BY run_id, seq", params)  # noqa: S608 - constant fragments, bound values
        names = [d[0] for d in cursor.description]
        for row in cursor:
            values = dict(zip(names, row, strict=True))
            known = {key: values.pop(key, None) for key in _KNOWN}
            known["detections"] = _parse_detections(known["detections"], name, known["frame_id"])
            yield FrameRecord(**known, extra=values)


def _parse_detections(text: str | None, name: str, frame_id: str) -> list[dict[str, Any]] | None:
    if text is None:
        return None
    try:
        objects = json.loads(text)
    except ValueError:
        objects = None  # refused below, as any JSON that is not a list of objects
    if not (isinstance(objects, list) and all(isinstance(obj, dict) for obj in objects)):
        raise LedgerError(
            f"{name}: frame {frame_id} has detections that are not a JSON list of objects",
            reason="bad_value",
            frame_id=frame_id,
        )
    return objects
