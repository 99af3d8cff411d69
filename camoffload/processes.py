"""Cloud workers as child processes for experiments, started and stopped by pid.

Workers run as ``python -m camoffload worker`` so their CPU, GIL and event loop are
their own, as in a deployment; the experiment's edge runs in the harness itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import IO

from pipeline.children import supervised, supervised_child
from pipeline.config import Config
from pipeline.cpus import cpu_shares, format_cpus
from pipeline.errors import CamoffloadError, ProtocolError
from pipeline.mqtt import make_client, payload_bytes
from pipeline.protocol import WorkerStatus

__all__ = ["WorkerGroup", "WorkerSettings"]

logger = logging.getLogger(__name__)

_READY_TIMEOUT_S = 120.0  # loading torch and a model on a busy 2-core box
_STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings:
    model: str
    count: int = 1
    max_batch: int = 16
    slowdown: float = 1.0
    group_tag: str = "eval"
    settings: tuple[str, ...] = ()  # more "key=value" config overrides for each worker
    pin: bool = False  # worker i runs on the i-th share of this machine's cores


class WorkerGroup:
    """``count`` workers serving ``model`` on the config's broker and prefix."""

    def __init__(self, config: Config, settings: WorkerSettings) -> None:
        self._config = config
        self._settings = settings
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self.worker_ids = [f"{settings.group_tag}-w{i + 1}" for i in range(settings.count)]

    @property
    def pids(self) -> dict[str, int]:
        """Worker id -> pid of the running workers."""
        # The workers' own pids, not their supervisors': what is pinned and measured.
        return {
            worker_id: supervised_child(process.pid)
            for worker_id, process in self._processes.items()
        }

    async def start(self) -> None:
        self._spawn()
        try:
            await self._wait_online()
        except BaseException:
            await self.stop()
            raise

    def _spawn(self) -> None:
        cfg, s = self._config, self._settings
        shares = cpu_shares(s.count) if s.pin else [None] * s.count
        for worker_id, cpus in zip(self.worker_ids, shares, strict=True):
            argv = [
                sys.executable, "-m", "camoffload", "worker",
                "--broker", cfg.broker.url,
                "--set", f"broker.protocol={cfg.broker.protocol}",
                "--set", f"prefix={cfg.prefix}",
                "--set", f"worker.shared_subscription={cfg.worker.shared_subscription}",
                "--set", "worker.status_interval_s=0.5",
                "--set", f"worker.slowdown={s.slowdown}",
                "--worker-id", worker_id, "--model", s.model, "--max-batch", str(s.max_batch),
                "--log-level", "WARNING",
            ]  # fmt: skip
            for setting in s.settings:
                argv += ["--set", setting]
            if cpus is not None:
                argv += ["--set", f"worker.cpus={format_cpus(cpus)}"]
            # stderr to an unread pipe would fill and block a chatty worker: a file.
            log = self._logs[worker_id] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
            # Under the supervisor: the worker dies with us, even if we are SIGKILLed.
            self._processes[worker_id] = subprocess.Popen(
                supervised(argv), stdout=subprocess.DEVNULL, stderr=log
            )

    async def _wait_online(self) -> None:
        cfg = self._config
        waiting = set(self.worker_ids)
        async with make_client(cfg.broker, client_id=f"{self._settings.group_tag}-watch") as c:
            await c.subscribe(cfg.topics.worker_status_filter, qos=1)
            try:
                async with asyncio.timeout(_READY_TIMEOUT_S):
                    async for message in c.messages:
                        self._check_alive()
                        try:
                            status = WorkerStatus.from_bytes(payload_bytes(message))
                        except ProtocolError:
                            continue
                        if status.online:
                            waiting.discard(status.worker_id)
                        if not waiting:
                            return
            except TimeoutError:
                self._check_alive()
                raise CamoffloadError(
                    f"workers {sorted(waiting)} not online after {_READY_TIMEOUT_S:.0f} s"
                ) from None

    def _check_alive(self) -> None:
        for worker_id, process in self._processes.items():
            if process.poll() is not None:
                log = self._logs[worker_id]
                log.seek(0)
                err = log.read().decode(errors="replace")
                raise CamoffloadError(
                    f"worker {worker_id} exited {process.returncode}: {err.strip()[-800:]}"
                )

    async def stop(self) -> None:
        """SIGTERM (the worker drains), then SIGKILL whoever outlives the timeout."""
        processes = list(self._processes.values())
        self._processes.clear()
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.to_thread(process.wait, _STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                logger.warning("worker pid %s ignored SIGTERM; killing it", process.pid)
                process.kill()
                await asyncio.to_thread(process.wait)
        for log in self._logs.values():
            with contextlib.suppress(OSError):
                log.close()
        self._logs.clear()
