"""Snapshots on disk: each object's best picture as a file named by its event id.

``edge.snapshot_dir`` keeps ``<edge>-<object id>-<label>.jpg`` for each object, written
again when its best picture improves, and the newest ``edge.snapshot_keep`` files: the
folder cannot grow without bound. Writes happen in a thread, off the event loop. A
write that fails (a full disk, a read-only folder) is logged once per kind of failure
and never stops the edge: MQTT still carries the snapshot and the ledger the frame.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from pathlib import Path

from edge_node.tracker import TrackedObject

__all__ = ["SnapshotFolder"]

logger = logging.getLogger(__name__)


class SnapshotFolder:
    def __init__(self, folder: Path, *, edge_id: str, keep: int) -> None:
        self.folder = folder
        self._edge_id = edge_id
        self._keep = keep
        self._files: OrderedDict[str, Path] = OrderedDict()  # object id -> file, oldest first
        self._failures: set[str] = set()
        self.written = 0
        self.failed = 0

    def path_for(self, obj: TrackedObject) -> Path:
        return self.folder / f"{self._edge_id}-{obj.id}-{obj.label}.jpg"

    async def write(self, obj: TrackedObject, jpeg: bytes) -> None:
        path = self.path_for(obj)
        self._files[obj.id] = path
        self._files.move_to_end(obj.id)
        stale = []
        while len(self._files) > self._keep:
            stale.append(self._files.popitem(last=False)[1])
        try:
            await asyncio.to_thread(_replace, path, jpeg, stale)
        except OSError as exc:
            self.failed += 1
            kind = type(exc).__name__ + str(exc.errno)
            if kind not in self._failures:  # once per kind: a full disk must not flood the log
                self._failures.add(kind)
                logger.warning("edge %s: snapshot not written to %s: %s", self._edge_id, path, exc)
            return
        self.written += 1


def _replace(path: Path, jpeg: bytes, stale: list[Path]) -> None:
    """Write ``path`` whole (a reader never sees half a JPEG), then drop ``stale``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".jpg.part")
    partial.write_bytes(jpeg)
    os.replace(partial, path)
    for old in stale:
        old.unlink(missing_ok=True)
