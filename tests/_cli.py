"""Running a long-lived ``camoffload`` command in this process, then stopping it as a
user would (SIGINT), so tests cover the real command and signal path without paying
for a second interpreter's imports."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable

from camoffload.cli import main as cli_main


def _wait_accepts(port: int, done: threading.Event, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)
    raise RuntimeError("the command ended before it listened")


def run_cli_until_probed(argv: list[str], port: int, probe: Callable[[], None]) -> int:
    """Run ``camoffload argv`` (which serves on ``port``) in the main thread; in another,
    wait for the port, run ``probe`` and send this process SIGINT, which the command
    handles by shutting down. Returns its exit code; re-raises the probe's failure."""
    failures: list[BaseException] = []
    cli_done = threading.Event()

    def driver() -> None:
        try:
            _wait_accepts(port, cli_done, timeout_s=60)
            probe()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread below
            failures.append(exc)
        finally:
            if not cli_done.is_set():  # only while the command's handler is installed
                os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=driver, name="cli-probe")
    thread.start()
    try:
        code = cli_main(argv)
    finally:
        cli_done.set()
        thread.join(timeout=30)
    if failures:
        raise failures[0]
    return code
