"""A broker child process on 127.0.0.1: start it, wait until it accepts, stop it by pid."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from pipeline.allocator import environ_keeping_freed_memory
from pipeline.children import supervised, supervised_child
from pipeline.config import MqttProtocol
from pipeline.errors import BrokerError

__all__ = ["BrokerInfo", "BrokerProcess", "free_port"]

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"


def free_port() -> int:
    """An ephemeral port that was free a moment ago (callers retry if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    # Every broker we start listens on 127.0.0.1 (alone, or as part of 0.0.0.0).
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    """What clients need to know about a running broker."""

    kind: str  # "mosquitto", "mosquitto-hardened", "mosquitto-bridge" or "embedded"
    port: int
    protocol: MqttProtocol  # the MQTT version clients should speak: "5" or "3.1.1"
    shared_subscriptions: bool
    limitations: str  # said in the log, so users know what they are not getting
    tls: bool = False  # the listener speaks TLS only (the hardened broker)

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{HOST}:{self.port}"


class BrokerProcess:
    """Runs ``argv_for(port, workdir)`` as a child and owns it until :meth:`stop`.

    Reusable but not re-entrant: ``start`` on a running broker is an error. With
    ``port=0`` an ephemeral port is chosen, retrying if another process takes it first.

    ``keep_freed_memory`` starts the child with glibc's malloc thresholds raised (see
    :mod:`pipeline.allocator`). Mosquitto mallocs a buffer per packet; a bundle of frames
    is over glibc's 128 KiB mmap threshold, so by default each one is a fresh ``mmap``
    whose pages fault in one by one: 13-20 faults and 56-80 us of Mosquitto CPU per split
    frame at saturation, against none and 26-34 us with them (bench/pipeline_threads.py).
    """

    def __init__(
        self,
        *,
        kind: str,
        argv_for: Callable[[int, Path], list[str]],
        port: int = 0,
        protocol: MqttProtocol,
        shared_subscriptions: bool,
        limitations: str = "",
        tls: bool = False,
        startup_timeout_s: float = 10.0,
        keep_freed_memory: bool = False,
    ) -> None:
        self._kind = kind
        self._argv_for = argv_for
        self._requested_port = port
        self._protocol = protocol
        self._shared = shared_subscriptions
        self._limitations = limitations
        self._tls = tls
        self._startup_timeout_s = startup_timeout_s
        self._keep_freed_memory = keep_freed_memory
        self._proc: subprocess.Popen[bytes] | None = None  # the supervisor (pipeline.children)
        self._broker_pid: int | None = None  # the broker under it
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._info: BrokerInfo | None = None
        self._last_port: int | None = None  # where restart() brings it back

    @property
    def info(self) -> BrokerInfo:
        if self._info is None:
            raise BrokerError(f"the {self._kind} broker is not running")
        return self._info

    @property
    def pid(self) -> int | None:
        # The broker's own pid, not its supervisor's: what a bench measures the CPU of.
        return None if self._proc is None else self._broker_pid

    def start(self) -> BrokerInfo:
        if self._proc is not None:
            raise BrokerError(f"the {self._kind} broker is already running (pid {self.pid})")
        self._workdir = tempfile.TemporaryDirectory(prefix=f"camoffload-{self._kind}-")
        attempts = 1 if self._requested_port else 3
        last_error = ""
        for _ in range(attempts):
            port = self._requested_port or free_port()
            try:
                self._spawn(port)
            except BrokerError as exc:
                last_error = str(exc)
                continue
            self._last_port = port
            self._info = BrokerInfo(
                kind=self._kind,
                port=port,
                protocol=self._protocol,
                shared_subscriptions=self._shared,
                limitations=self._limitations,
                tls=self._tls,
            )
            return self._info
        self._cleanup_workdir()
        raise BrokerError(last_error)

    def _spawn(self, port: int) -> None:
        assert self._workdir is not None
        workdir = Path(self._workdir.name)
        if _accepts(port):
            # Something already listens there: waiting for "accepts connections" would
            # wrongly report our broker as up while it fails to bind.
            raise BrokerError(f"port {port} on {HOST} is already in use")
        argv = self._argv_for(port, workdir)
        log_path = workdir / "broker.log"
        if shutil.which(argv[0]) is None:
            # Checked here: the supervisor would only report it in the broker's log.
            raise BrokerError(f"cannot run {argv[0]!r}: not found or not executable")
        with log_path.open("wb") as log:
            try:
                proc = subprocess.Popen(
                    supervised(argv),  # dies with us, even if we are SIGKILLed
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.child_environ(),
                )
            except OSError as exc:
                raise BrokerError(f"cannot run {argv[0]!r}: {exc}") from exc
        deadline = time.monotonic() + self._startup_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(
                    f"{self._kind} broker exited with code {proc.returncode} on port {port}: "
                    f"{_tail(log_path)}"
                )
            if _accepts(port):
                self._proc, self._broker_pid = proc, supervised_child(proc.pid)
                logger.info("%s broker pid %d listening on %s:%d", self._kind, self.pid, HOST, port)
                return
            time.sleep(0.02)
        _terminate(proc, supervised_child(proc.pid))
        raise BrokerError(
            f"{self._kind} broker did not accept connections on port {port} within "
            f"{self._startup_timeout_s:.0f} s: {_tail(log_path)}"
        )

    def child_environ(self) -> dict[str, str]:
        """The environment the broker starts with: ours, plus glibc's malloc tunables
        when ``keep_freed_memory``. (glibc rewrites ``GLIBC_TUNABLES`` in a child's
        ``/proc/PID/environ`` as it parses it, so this is where to check it.)"""
        if self._keep_freed_memory:
            return environ_keeping_freed_memory(os.environ)
        return dict(os.environ)

    def returncode(self) -> int | None:
        """``None`` while the broker runs; its exit code once it has exited on its own."""
        if self._proc is None:
            raise BrokerError(f"the {self._kind} broker is not running")
        return self._proc.poll()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 5 s. Idempotent."""
        proc, self._proc, self._info = self._proc, None, None
        if proc is not None:
            pid = self._broker_pid or proc.pid
            _terminate(proc, pid)
            logger.info("%s broker pid %d stopped", self._kind, pid)
        self._cleanup_workdir()

    def kill(self) -> None:
        """SIGKILL, as a crash or power loss would: nothing is saved on the way out.
        Idempotent."""
        proc, self._proc, self._info = self._proc, None, None
        if proc is not None and proc.poll() is None:
            # The broker itself: a Mosquitto that dropped to its own user would outlive
            # a killed supervisor (Linux clears its parent-death signal on that change).
            pid = self._broker_pid or proc.pid
            _kill_both(proc, pid)
            logger.info("%s broker pid %d killed", self._kind, pid)
        self._cleanup_workdir()

    def restart(self, *, kill: bool = False) -> BrokerInfo:
        """Stop the broker (SIGTERM, or SIGKILL with ``kill``) and start it again on the
        port it had, so clients reconnect to the same address. A broker with persistence
        finds its saved state again; one without starts empty."""
        if self._last_port is None:
            raise BrokerError(f"the {self._kind} broker was never started")
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start_on(self._last_port)

    def start_on(self, port: int) -> BrokerInfo:
        """:meth:`start` on ``port`` (e.g. the port it had before a stop)."""
        requested, self._requested_port = self._requested_port, port
        try:
            return self.start()
        finally:
            self._requested_port = requested

    @property
    def last_port(self) -> int | None:
        """The port of the last start, kept across :meth:`stop`."""
        return self._last_port

    def _cleanup_workdir(self) -> None:
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> BrokerInfo:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _terminate(proc: subprocess.Popen[bytes], broker_pid: int) -> None:
    """SIGTERM through the supervisor (it forwards it), then SIGKILL to both."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        _kill_both(proc, broker_pid)


def _kill_both(proc: subprocess.Popen[bytes], broker_pid: int) -> None:
    if broker_pid != proc.pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(broker_pid, signal.SIGKILL)
    # The supervisor exits with the broker's status once the broker is gone.
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"
