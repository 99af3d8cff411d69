"""Running a component until SIGINT/SIGTERM: first signal stops gracefully, second aborts.

SIGUSR1 dumps every thread's stack to stderr (``kill -USR1 PID``), for a process that
seems stuck: it costs nothing until sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import io
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["run_with_signals"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def run_with_signals(main: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """``asyncio.run(main(stop))``; ``stop`` is set by the first SIGINT/SIGTERM and the
    main task is cancelled by the second (for a shutdown that hangs)."""

    if hasattr(signal, "SIGUSR1"):
        # Needs a real stderr file descriptor; under a test runner's capture there is none.
        with contextlib.suppress(io.UnsupportedOperation, AttributeError, ValueError):
            faulthandler.register(signal.SIGUSR1, all_threads=True)

    async def runner() -> T:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        task = asyncio.current_task()
        assert task is not None

        def on_signal(sig: signal.Signals) -> None:
            if stop.is_set():
                logger.warning("%s again: aborting", sig.name)
                task.cancel()
            else:
                logger.warning("%s: stopping (send it again to abort)", sig.name)
                stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await main(stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    return asyncio.run(runner())
