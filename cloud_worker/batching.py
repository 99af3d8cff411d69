"""Dynamic batching: gather up to ``max_batch`` items or wait ``max_wait_s``, whichever first."""

from __future__ import annotations

import asyncio
from typing import TypeVar

__all__ = ["next_batch"]

T = TypeVar("T")


async def next_batch(queue: asyncio.Queue[T], *, max_batch: int, max_wait_s: float) -> list[T]:
    """Wait for one item, then take what arrives within ``max_wait_s`` up to ``max_batch``.

    Items already queued are taken without waiting, so under load batches fill at once
    and at low load a lone frame waits at most ``max_wait_s``.
    """
    batch = [await queue.get()]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_s
    while len(batch) < max_batch:
        try:
            batch.append(queue.get_nowait())
            continue
        except asyncio.QueueEmpty:
            pass
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            async with asyncio.timeout(remaining):
                batch.append(await queue.get())
        except TimeoutError:
            break
    return batch
