"""Log every full (generation 2) garbage collection's duration, per process.

Put this folder on ``PYTHONPATH`` with ``CAMOFFLOAD_GC_LOG`` naming a folder, and every
Python process started from there (the bench, its workers) writes ``<pid>.txt`` there
at exit: its command line, then each full collection as ``AT:MS``, seconds since the
process started and milliseconds it took (``gc.collect()`` calls included). Used
to see whether full collections happen while a pipeline serves (docs/performance.md):

    mkdir -p /tmp/gc && CAMOFFLOAD_GC_LOG=/tmp/gc PYTHONPATH=bench/gc_watch \\
        .venv/bin/python -m camoffload bench --payloads jpeg --no-http --workers 2 \\
        --rounds 1 --rates 250,500 [--worker-set worker.freeze_heap=false]
    head /tmp/gc/*.txt
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import time

_LOG_DIR = os.environ.get("CAMOFFLOAD_GC_LOG")

if _LOG_DIR:
    _born = time.perf_counter()
    _started = [0.0]
    _full: list[tuple[float, float]] = []

    def _on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            _started[0] = time.perf_counter()
        elif info["generation"] == 2:
            now = time.perf_counter()
            _full.append((_started[0] - _born, (now - _started[0]) * 1000))

    def _write() -> None:
        with open(os.path.join(str(_LOG_DIR), f"{os.getpid()}.txt"), "w") as out:
            out.write(" ".join(sys.argv[:2]) + "\n")
            out.write(" ".join(f"{at:.1f}:{ms:.1f}" for at, ms in _full) + "\n")

    gc.callbacks.append(_on_gc)
    atexit.register(_write)
