"""Child processes that die with their parent, however the parent dies.

``camoffload demo``, ``replay``, ``eval`` and ``bench`` start Mosquitto, workers, load
generators and HTTP servers. Stopping them by pid covers a parent that exits or is
interrupted; a parent that is SIGKILLed (an OOM kill, a test runner's timeout) runs no
code at all, and its children used to run on with parent pid 1.

So every child starts under a small supervisor, ``python -m pipeline.children PARENT --
ARGV...``. It checks once a second that its parent is still there; when it is gone it
sends the child SIGTERM (a worker drains, Mosquitto closes cleanly) and kills it if it
is still there ``_GRACE_S`` later. A SIGTERM from the living parent is passed on; SIGINT
is not (Ctrl-C already reaches the whole process group). Its exit status is the child's,
so a caller reads it exactly as it read the child's.

Why a supervisor and not Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``) on
the child itself: Linux clears it when a process changes its user id, which Mosquitto
does when started as root (it drops to the ``mosquitto`` user), and setting it from
``preexec_fn`` in a threaded parent is not safe. The supervisor is single-threaded, so
it does set it on its own child: a worker dies at once should the supervisor itself
be SIGKILLed. The check works the same on any POSIX system.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
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


def _on_parent_death(signum: int) -> None:
    """Ask Linux to send ``signum`` to this process when its parent dies (a no-op
    elsewhere: the supervisor's once-a-second check covers that)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)


def _child_dies_with_us() -> None:
    # Runs in the supervisor's child between fork and exec: safe, as the supervisor is
    # single-threaded. Cleared again by a process that changes user (Mosquitto); the
    # supervisor covers that case.
    _on_parent_death(signal.SIGKILL)


def main(args: Sequence[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: python -m pipeline.children PARENT_PID -- ARGV...\n")
        return 2
    parent, argv = int(args[0]), list(args[2:])
    child: subprocess.Popen[bytes] | None = None

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        # A stop from the parent: pass it on. (Once the parent is gone the loop below
        # sends the one SIGTERM: a worker aborts on a second.)
        if os.getppid() == parent and child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    def on_int(_signum: int, _frame: FrameType | None) -> None:
        # Ctrl-C reaches the whole foreground process group, the child included:
        # forwarding it would make one Ctrl-C two.
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
    give_up_at: float | None = None  # set once the parent is gone
    while True:
        try:
            return child.wait(timeout=_POLL_S)
        except subprocess.TimeoutExpired:
            pass
        if give_up_at is None:
            if os.getppid() != parent:
                child.send_signal(signal.SIGTERM)
                give_up_at = time.monotonic() + _GRACE_S
        elif time.monotonic() > give_up_at:
            child.kill()
            return child.wait()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
