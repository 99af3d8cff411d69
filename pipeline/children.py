"""Child processes that die with their parent, however the parent dies.

``camoffload demo``, ``replay``, ``eval`` and ``bench`` start Mosquitto, workers, load
generators and HTTP servers. Stopping them by pid covers a parent that exits or is
interrupted; a parent that is SIGKILLed (an OOM kill, a test runner's timeout) runs no
code at all, and its children used to run on with parent pid 1.

So every child starts under a small supervisor, ``python -m pipeline.children PARENT --
ARGV...``: it asks Linux to signal it when its parent dies (``prctl(PR_SET_PDEATHSIG)``),
checks that the parent is still there (it may have died before the request took),
starts ARGV as its own child, and forwards SIGTERM and SIGINT to it. When the parent
dies it gets SIGTERM, forwards it (the worker drains, Mosquitto closes cleanly) and,
if the child is still there after ``_GRACE_S``, kills it. Its exit status is the
child's, so a caller reads it exactly as it read the child's.

Why a supervisor and not the signal on the child itself: Linux clears the parent-death
signal when a process changes its user id, which Mosquitto does when started as root
(it drops to the ``mosquitto`` user), and setting it from ``preexec_fn`` in a
threaded parent is not safe. The supervisor is single-threaded, so it also sets the
signal on its own child (a worker), for the case where the supervisor is killed itself.

Elsewhere than Linux there is no parent-death signal: the supervisor checks its parent
once a second instead (on Linux too, in case the signal was missed).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

__all__ = ["supervised", "supervised_child"]

_PR_SET_PDEATHSIG = 1
_GRACE_S = 20.0  # a worker drains its queue on SIGTERM; then it is killed
_POLL_S = 1.0


def supervised(argv: Sequence[str]) -> list[str]:
    """``argv`` run under the supervisor: a child that dies with this process."""
    return [sys.executable, "-m", "pipeline.children", str(os.getpid()), "--", *argv]


def supervised_child(supervisor_pid: int) -> int:
    """The pid of the process a supervisor started (what to pin, measure or name in a
    log), or the supervisor's own pid where that cannot be read (not Linux, not yet)."""
    try:
        children = Path(f"/proc/{supervisor_pid}/task/{supervisor_pid}/children").read_text()
    except OSError:
        children = " ".join(str(pid) for pid in _children_by_scan(supervisor_pid))
    pids = children.split()
    return int(pids[0]) if pids else supervisor_pid


def _children_by_scan(parent: int) -> list[int]:
    """Children of ``parent`` read from every process's stat (kernels without
    /proc/PID/task/TID/children)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            after_name = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(after_name[1]) == parent:
            found.append(int(entry.name))
    return found


def _ask_for_parent_death_signal() -> bool:
    """True when Linux will SIGTERM this process as its parent dies."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return int(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)) == 0


def _child_dies_with_us() -> None:
    # Single-threaded supervisor: safe between fork and exec. Cleared again by a
    # process that changes user (Mosquitto); the supervisor covers that case.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def main(args: Sequence[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: python -m pipeline.children PARENT_PID -- ARGV...\n")
        return 2
    parent, argv = int(args[0]), list(args[2:])
    _ask_for_parent_death_signal()
    child: subprocess.Popen[bytes] | None = None
    orphaned = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        if os.getppid() != parent:
            orphaned.set()
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    def on_int(_signum: int, _frame: FrameType | None) -> None:
        # Ctrl-C reaches the whole foreground process group, the child included:
        # forwarding it would make one Ctrl-C two, and a worker aborts on the second.
        pass

    # Python-level handlers, installed before the child starts: exec resets them to the
    # defaults in the child, where SIG_IGN would have been inherited.
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_int)
    if os.getppid() != parent:
        return 1  # the parent died before the request took: start nothing
    try:
        child = subprocess.Popen(argv, preexec_fn=_child_dies_with_us)
    except OSError as exc:
        sys.stderr.write(f"cannot run {argv[0]!r}: {exc}\n")
        return 127
    give_up_at: float | None = None
    while True:
        try:
            return child.wait(timeout=_POLL_S)
        except subprocess.TimeoutExpired:
            pass
        if not orphaned.is_set() and os.getppid() != parent:
            orphaned.set()  # no parent-death signal here (not Linux), or it was missed
            child.send_signal(signal.SIGTERM)
        if orphaned.is_set():
            if give_up_at is None:
                give_up_at = time.monotonic() + _GRACE_S
            elif time.monotonic() > give_up_at:
                child.kill()
                return child.wait()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
