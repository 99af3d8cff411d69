"""Freeze the objects a process built at start-up, so the garbage collector stops
rescanning them.

CPython's cyclic collector walks every tracked object in the generation it collects. A
worker or an edge has ~350,000 of them once torch, OpenCV and a model are loaded, nearly
all alive for the whole run, and a full (generation 2) collection walks all of them while
holding the GIL: measured on the 2-core box, 150-185 ms with the event loop stopped
(docs/performance.md). That is a loop stall at a random moment under load, longer than many
frames' deadlines.

:func:`freeze_heap` collects once, then moves every object still alive into the
permanent generation (:func:`gc.freeze`), which collections skip; a full collection then
walks only what the process allocated since (well under a millisecond). Reference counting
still frees frozen objects; only a reference cycle among them that dies later is kept, so
call this once, after start-up, not in a loop.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_heap"]


def freeze_heap() -> int:
    """Collect garbage, then freeze what is alive now; the number of objects frozen.

    Process-wide. Call it once the long-lived objects exist (imports done, model loaded)
    and before serving: the collection it runs first takes as long as the pause it saves.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
