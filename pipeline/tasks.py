"""Cancelling tasks that talk to aiomqtt, reliably.

On Python 3.11 ``asyncio.wait_for`` (which aiomqtt uses for every publish, subscribe
and connect) can swallow a cancellation that arrives as its inner future completes
(CPython gh-86296, fixed in 3.12). A task cancelled at that moment carries on as if
nothing happened, and whoever awaits it waits forever: a shutdown that hangs. So
shutdown paths cancel again until the task is really done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], *, retry_s: float = 0.5) -> None:
    """Cancel ``tasks`` and wait until every one is done, re-cancelling stragglers.

    Exceptions of the tasks are left on them (read ``task.exception()``), not raised.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=retry_s)
