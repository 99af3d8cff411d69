"""torch's OpenMP threads wait by sleeping, not spinning, in camoffload's processes.

GNU OpenMP (libgomp, which torch's x86 wheels load) spins a thread for a while after
each parallel region, in case another follows at once. A worker or an edge runs torch
between an event loop, decode threads and, on a small box, Mosquitto: the spinning
threads burn the cores those need. On the 2-core box, one worker (`--model null`, one
frame per message, 2 torch threads, ``bench/profile_worker.py``, alternating):
4,459/4,839 frames/s at 202/178 us of worker CPU a frame with ``OMP_WAIT_POLICY=PASSIVE``,
against 3,307/3,411 at 371/356 us without.

libgomp reads the variable once, when it loads, so it is set here, before anything of
camoffload imports torch; a value the user set is kept (``OMP_WAIT_POLICY=ACTIVE``
restores spinning).
"""

from __future__ import annotations

import os

__all__ = ["WAIT_POLICY", "prefer_passive_waiting"]

WAIT_POLICY = "OMP_WAIT_POLICY"


def prefer_passive_waiting() -> str:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it; return what is in force."""
    return os.environ.setdefault(WAIT_POLICY, "PASSIVE")
