"""Children die with their parent: the supervisor (pipeline.children) and the commands
that start brokers, workers and load generators, SIGKILLed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from camoffload.demo import default_video
from pipeline.children import supervised

ROOT = Path(__file__).resolve().parents[1]
MARK = "CAMOFFLOAD_TEST_MARK"


def _marked(mark: str) -> set[int]:
    """Pids of live processes whose environment carries ``MARK=mark``."""
    needle = f"{MARK}={mark}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone, or not ours to read
        if state != "Z" and needle in environ.split(b"\0"):
            found.add(int(entry.name))
    return found


def _real_children(mark: str, command_pid: int) -> int:
    """Marked processes other than the command and the supervisors it started."""
    count = 0
    for pid in _marked(mark) - {command_pid}:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"pipeline.children" not in cmdline:
            count += 1
    return count


def _wait_for(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout_s:g} s: {what}")


def _start(argv: list[str], mark: str) -> subprocess.Popen[bytes]:
    env = os.environ | {MARK: mark}
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")


@pytest.mark.timeout(120)
def test_the_supervisor_passes_the_exit_status_and_sigterm_through() -> None:
    done = subprocess.run(
        supervised([sys.executable, "-c", "raise SystemExit(7)"]), timeout=60, check=False
    )
    assert done.returncode == 7
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    with subprocess.Popen(
        supervised([sys.executable, "-c", script]), stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 3


@pytest.mark.timeout(120)
def test_a_supervised_child_dies_when_its_parent_is_killed() -> None:
    mark = uuid.uuid4().hex
    parent_script = (
        "import subprocess, sys, time\n"
        "from pipeline.children import supervised\n"
        "subprocess.Popen(supervised([sys.executable, '-c', 'import time; time.sleep(600)']))\n"
        "time.sleep(600)\n"
    )
    parent = _start([sys.executable, "-c", parent_script], mark)
    try:
        # The parent, its supervisor and the sleeping child.
        _wait_for(lambda: len(_marked(mark)) >= 3, 60, "the child to start")
    finally:
        parent.kill()
        parent.wait(timeout=30)
    _wait_for(lambda: not _marked(mark), 60, "the supervisor and its child to go")


# Each command, and the children it starts before the kill (not counting the
# supervisors): the demo runs its worker in-process and starts only a broker; the others
# start a broker and at least one worker. The kill then lands mid-run.
COMMANDS = {
    "demo": (["demo", "--frames", "150"], 1),
    "replay": (["replay", str(default_video()), "--no-progress", "--rate", "5"], 2),
    "eval": (["eval", "--suite", "seed-study", "--quick", "--out", "{tmp}/eval"], 2),
    "bench": (["bench", "--payloads", "jpeg", "--no-http", "--rounds", "1"], 2),
}


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_sigkill_of_a_command_leaves_no_child(command: str, tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    template, children = COMMANDS[command]
    argv = [a.replace("{tmp}", str(tmp_path)) for a in template]
    proc = _start([sys.executable, "-m", "camoffload", *argv], mark)
    try:
        _wait_for(
            lambda: _real_children(mark, proc.pid) >= children or proc.poll() is not None,
            150,
            f"camoffload {command} to start its children",
        )
        assert proc.poll() is None, f"camoffload {command} ended before it could be killed"
    finally:
        proc.kill()
        proc.wait(timeout=30)
    try:
        _wait_for(lambda: not _marked(mark), 90, f"every child of camoffload {command} to go")
    finally:
        for pid in _marked(mark):  # a failed run must not leave its orphans to the next
            os.kill(pid, signal.SIGKILL)
