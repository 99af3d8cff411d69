"""Reading a live source (a camera, a stream) without ever making it wait.

A camera delivers frames at its own pace whether or not the node keeps up. A reader
thread takes every frame as it comes and keeps only the newest; a frame replaced
before the node took it is handed over as *dropped* (its capture time and position,
not its pixels), so the ledger records it instead of the driver losing it silently.
Memory is one frame plus a bounded list of drops.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

from edge_node.sources import CapturedFrame, FrameSource
from pipeline.tasks import cancel_and_wait

__all__ = ["DroppedFrame", "LatestFrameReader", "next_or_stop"]

logger = logging.getLogger(__name__)

# Drops waiting to be recorded. The node records them on every frame it takes, so this
# only fills if the loop stalls for minutes; past it, drops are still counted.
_MAX_PENDING_DROPS = 10_000


@dataclass(frozen=True, slots=True)
class DroppedFrame:
    capture_ts: float
    index: int


class LatestFrameReader:
    """Own a live source's reads in a thread; :meth:`next` gives the newest frame."""

    def __init__(self, source: FrameSource) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._latest: CapturedFrame | None = None
        self._dropped: list[DroppedFrame] = []
        self.uncounted_drops = 0  # drops past _MAX_PENDING_DROPS: counted, not listed
        self._ended = False
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._wakeup = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._pump, name="edge-capture", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _pump(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self._source.read()
                with self._lock:
                    if frame is None:
                        self._ended = True
                    else:
                        if self._latest is not None:
                            self._drop(self._latest)
                        self._latest = frame
                if frame is None:
                    break
                self._loop.call_soon_threadsafe(self._wakeup.set)
        except Exception as exc:  # noqa: BLE001 - handed to the loop, which raises it
            with self._lock:
                self._error, self._ended = exc, True
        finally:
            self._loop.call_soon_threadsafe(self._wakeup.set)

    def _drop(self, frame: CapturedFrame) -> None:
        if len(self._dropped) < _MAX_PENDING_DROPS:
            self._dropped.append(DroppedFrame(frame.capture_ts, frame.index))
        else:
            self.uncounted_drops += 1

    async def next(self) -> tuple[CapturedFrame | None, list[DroppedFrame]]:
        """The newest frame (None at the end of the source) and the frames dropped
        since the last call."""
        while True:
            with self._lock:
                frame, self._latest = self._latest, None
                dropped, self._dropped = self._dropped, []
                ended, error = self._ended, self._error
                if frame is None and not ended:
                    self._wakeup.clear()
            if error is not None:
                raise error
            if frame is not None or ended or dropped:
                return frame, dropped
            await self._wakeup.wait()

    async def stop(self) -> None:
        """Stop reading; waits for the read in progress (a camera: one frame period)."""
        self._stop.set()
        await asyncio.to_thread(self._thread.join, 5.0)
        if self._thread.is_alive():
            logger.warning("the capture thread is stuck in a read; leaving it behind")


async def next_or_stop(
    reader: LatestFrameReader, stop: asyncio.Event | None
) -> tuple[CapturedFrame | None, list[DroppedFrame]]:
    """The reader's next frame, or (None, []) once ``stop`` is set (a stalled stream
    must not keep the node from stopping)."""
    if stop is None:
        return await reader.next()
    reading = asyncio.create_task(reader.next())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if reading.done():
        return reading.result()
    await cancel_and_wait([reading])
    return None, []
