"""``camoffload worker --processes N``: N workers on one box, one process each.

One worker process is one event loop and one GIL: its MQTT decoding, admission and
replies run on one core, whatever the GPU or the other cores could do
(docs/performance.md, the transport ceiling). N processes on one shared subscription
split the frames between them, as N boxes would.

The pool is a supervisor, not a worker: it starts N ``camoffload worker`` children with
the same options and ids ``<worker_id>-1`` .. ``-N``, each on its share of the cores
(``worker.cpus``) with that many torch threads unless told otherwise, and each under
``pipeline.children`` so it dies with the pool, even a SIGKILLed one. A child that
exits on its own is started again after a backoff (1 s, doubling to 30 s; reset by a
minute up). One that fails within seconds of starting, five times running, stops the
pool with exit status 1: a wrong broker address or model is a clear error, not a loop.
The first SIGINT/SIGTERM is passed on (each child drains its queue); the pool exits
once they have, killing any child still there after its drain time and a grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from broker.acl import MAX_POOL_PROCESSES
from camoffload.lifecycle import run_with_signals
from pipeline.children import supervised
from pipeline.config import Config
from pipeline.cpus import cpu_shares, format_cpus
from pipeline.errors import ConfigError

__all__ = ["PoolSettings", "child_argv", "forwarded_options", "run_pool", "run_pool_command"]

logger = logging.getLogger(__name__)

_BACKOFF_FIRST_S = 1.0
_BACKOFF_MAX_S = 30.0
_HEALTHY_AFTER_S = 60.0  # up this long: a later exit starts the backoff over
_EARLY_EXIT_S = 10.0  # an exit this soon after starting counts towards giving up
_EARLY_EXITS_ALLOWED = 5
_STOP_GRACE_S = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolSettings:
    count: int
    worker_id: str
    forwarded: tuple[str, ...]  # the worker options as given, less the pool's own
    pin: bool = True  # child i on the i-th share of the cores
    threads_given: bool = False  # --threads / worker.threads set: leave it alone
    metrics_port: int | None = None  # child i serves on port + i (0: each any free)
    drain_timeout_s: float = 10.0


def run_pool_command(config: Config, *, processes: int, pin: bool, argv: Sequence[str]) -> int:
    """``camoffload worker --processes N``: the pool until SIGINT/SIGTERM."""
    if not 1 <= processes <= MAX_POOL_PROCESSES:
        # The hardened broker lets a worker identity publish the status of this many.
        raise ConfigError(f"--processes must be 1..{MAX_POOL_PROCESSES}, not {processes}")
    settings = PoolSettings(
        count=processes,
        worker_id=config.worker.worker_id,
        forwarded=forwarded_options(argv),
        pin=pin and config.worker.cpus is None,
        threads_given=config.worker.threads is not None,
        metrics_port=config.worker.metrics_port,
        drain_timeout_s=config.worker.drain_timeout_s,
    )

    async def main(stop: asyncio.Event) -> int:
        return await run_pool(settings, stop)

    return run_with_signals(main)


def forwarded_options(argv: Sequence[str]) -> tuple[str, ...]:
    """The worker command's options as typed (``argv`` from ``worker`` on), less what
    the pool sets for each child."""
    per_child = {"--processes", "--worker-id", "--metrics-port"}
    args = list(argv[1:] if argv and argv[0] == "worker" else argv)
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in per_child:
            skip = True  # its value is the next argument
        elif arg != "--no-pin" and arg.split("=", 1)[0] not in per_child:
            kept.append(arg)
    return tuple(kept)


def child_argv(settings: PoolSettings, index: int) -> list[str]:
    """The command line of child ``index`` (0-based)."""
    argv = [sys.executable, "-m", "camoffload", "worker", *settings.forwarded]
    argv += ["--worker-id", f"{settings.worker_id}-{index + 1}"]
    if settings.pin:
        shares = cpu_shares(settings.count)
        argv += ["--set", f"worker.cpus={format_cpus(shares[index])}"]
        if not settings.threads_given:
            argv += ["--threads", str(len(shares[index]))]
    if settings.metrics_port is not None:
        port = settings.metrics_port + index if settings.metrics_port else 0
        argv += ["--metrics-port", str(port)]
    return argv


@dataclass(slots=True)
class _Child:
    index: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    backoff_s: float = _BACKOFF_FIRST_S
    early_exits: int = 0
    restart_at: float | None = None
    exits: list[int] = field(default_factory=list)


async def _start(settings: PoolSettings, child: _Child) -> None:
    argv = child_argv(settings, child.index)
    child.process = await asyncio.create_subprocess_exec(*supervised(argv))
    child.started = time.monotonic()
    child.restart_at = None
    logger.info(
        "pool: worker %s-%d started (pid %d)",
        settings.worker_id,
        child.index + 1,
        child.process.pid,
    )


def _exited(settings: PoolSettings, child: _Child, code: int) -> bool:
    """Note a child's exit and plan its restart; False when the pool should give up."""
    name = f"{settings.worker_id}-{child.index + 1}"
    up_s = time.monotonic() - child.started
    child.exits.append(code)
    child.process = None
    if up_s >= _HEALTHY_AFTER_S:
        child.backoff_s, child.early_exits = _BACKOFF_FIRST_S, 0
    if up_s < _EARLY_EXIT_S:
        child.early_exits += 1
        if child.early_exits >= _EARLY_EXITS_ALLOWED:
            logger.error(
                "pool: worker %s exited %d within %.0f s of starting %d times running; "
                "giving up (its log above says why)",
                name, code, _EARLY_EXIT_S, child.early_exits,
            )  # fmt: skip
            return False
    logger.warning(
        "pool: worker %s exited %d after %.0f s; starting it again in %.0f s",
        name, code, up_s, child.backoff_s,
    )  # fmt: skip
    child.restart_at = time.monotonic() + child.backoff_s
    child.backoff_s = min(_BACKOFF_MAX_S, child.backoff_s * 2)
    return True


async def run_pool(settings: PoolSettings, stop: asyncio.Event) -> int:
    """Run the pool until ``stop``; its exit status."""
    children = [_Child(i) for i in range(settings.count)]
    healthy = True
    try:
        for child in children:
            await _start(settings, child)
        while healthy and not stop.is_set():
            healthy = await _watch(settings, children, stop)
    finally:
        await _stop_all(settings, children)
    return 0 if healthy else 1


async def _watch(settings: PoolSettings, children: Sequence[_Child], stop: asyncio.Event) -> bool:
    """Wait for a child to exit, a restart to fall due or ``stop``; act on it."""
    waits = {
        asyncio.create_task(child.process.wait(), name=f"pool-wait-{child.index}"): child
        for child in children
        if child.process is not None
    }
    due = [c.restart_at for c in children if c.restart_at is not None]
    timeout = max(0.0, min(due) - time.monotonic()) if due else None
    stopping = asyncio.create_task(stop.wait(), name="pool-stop")
    try:
        done, _ = await asyncio.wait(
            [*waits, stopping], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in [*waits, stopping]:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*waits, stopping, return_exceptions=True)
    if stop.is_set():
        return True
    for task in done:
        child = waits.get(task)
        exited = child is not None and not task.cancelled() and task.exception() is None
        if exited and child is not None and not _exited(settings, child, task.result()):
            return False
    now = time.monotonic()
    for child in children:
        if child.process is None and child.restart_at is not None and child.restart_at <= now:
            await _start(settings, child)
    return True


async def _stop_all(settings: PoolSettings, children: Sequence[_Child]) -> None:
    """SIGTERM each running child (it drains), then kill what outlives the drain."""
    running = [c.process for c in children if c.process is not None]
    for process in running:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
    for process in running:
        try:
            async with asyncio.timeout(settings.drain_timeout_s + _STOP_GRACE_S):
                await process.wait()
        except TimeoutError:
            logger.warning("pool: worker pid %d outlived its drain; killing it", process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
