"""The edge keeps deciding when its ledger cannot be written, and says so.

A full disk or a ledger file gone read-only (a remounted SD card, a permission change)
makes every SQLite write fail. A camera must not stop deciding for that: the decision
still goes to the stats, the metrics, the events topic and the objects. The keeper
holds the records it could not write, in order, and writes them as soon as the file
takes writes again, so a disk that frees up loses nothing: every frame still ends in
one ledger decision. It holds at most ``backlog`` records; past that the oldest are
given up, counted in ``unrecorded`` and logged. It says, once and then in a summary
every 30 s, that it cannot record and why, and says when it records again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from edge_node.ledger import Ledger, LedgerCounts
from pipeline.errors import LedgerError
from pipeline.protocol import Decision
from pipeline.ratelog import RateLimitedLog

__all__ = ["DEFAULT_BACKLOG", "LedgerKeeper"]

logger = logging.getLogger(__name__)

DEFAULT_BACKLOG = 100_000  # records (~200 bytes each): hours of a camera at 10 fps
RETRY_S = 1.0  # a failing file is tried again at most this often


class LedgerKeeper:
    def __init__(self, ledger: Ledger, *, backlog: int = DEFAULT_BACKLOG) -> None:
        self.ledger = ledger
        self.backlog = backlog
        self.unrecorded = 0  # records given up for a full backlog
        self._pending: deque[tuple[str, str, dict[str, Any]]] = deque()
        self._labels: dict[str, int | None] = {}  # captured frame -> its true label
        self._captured = self._decided = self._offloaded = 0
        self._failing_since: float | None = None
        self._next_try = 0.0
        name = "the in-memory ledger" if ledger.path is None else str(ledger.path)
        self._log = RateLimitedLog(logger, f"ledger {name}", interval_s=30)

    def counts(self) -> LedgerCounts:
        """What the edge did, written or not."""
        return LedgerCounts(
            captured=self._captured, decided=self._decided, offloaded=self._offloaded
        )

    def capture(self, frame_id: str, **fields: Any) -> None:
        self._labels[frame_id] = fields.get("true_label")
        self._captured += 1
        self._write("capture", frame_id, fields)

    def decide(self, frame_id: str, decision: Decision, **fields: Any) -> int | None:
        """Record ``frame_id``'s decision (now or once the file takes writes); returns
        its true label, if known."""
        true_label = self._labels.pop(frame_id, None)
        self._decided += 1
        self._offloaded += decision.offloaded
        self._write("decide", frame_id, {"decision": decision, **fields})
        return true_label

    def finish(self) -> None:
        """A last try at what is waiting, and the final word on what was not written."""
        self._next_try = 0.0
        self._flush()
        self._log.flush()
        if self._pending or self.unrecorded:
            logger.error(
                "ledger: %d records could not be written and %d were given up: this run's "
                "ledger is incomplete",
                len(self._pending),
                self.unrecorded,
            )

    def _write(self, op: str, frame_id: str, fields: dict[str, Any]) -> None:
        self._pending.append((op, frame_id, fields))
        if len(self._pending) > self.backlog:
            self._pending.popleft()
            self.unrecorded += 1
            self._log.note("backlog full: oldest record given up")
        self._flush()

    def _flush(self) -> None:
        """Write what waits, in order, until the file refuses."""
        if self._failing_since is not None and time.monotonic() < self._next_try:
            return
        while self._pending:
            op, frame_id, fields = self._pending[0]
            try:
                if op == "capture":
                    self.ledger.capture(frame_id, **fields)
                else:
                    self.ledger.decide(frame_id, **fields)
            except LedgerError as exc:
                if exc.reason != "io":
                    # A record the ledger refuses for itself (a bad value): not a disk
                    # problem, and retrying it would block the rest for ever.
                    logger.exception("ledger: record of %s dropped", frame_id)
                    self._pending.popleft()
                    continue
                self._failed(exc)
                return
            self._pending.popleft()
        if self._failing_since is not None:
            logger.warning(
                "ledger: recording again after %.0f s; caught up on every waiting record",
                time.monotonic() - self._failing_since,
            )
            self._failing_since = None

    def _failed(self, exc: LedgerError) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        self._next_try = now + RETRY_S
        self._log.note(
            "cannot write: the edge keeps deciding and holds the records until it can",
            str(exc),
        )
