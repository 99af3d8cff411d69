"""Publishing an edge's frame requests: frames ready at the same moment share a message.

A camera at its own pace never has two frames ready at once, so each frame goes alone,
at once, as a plain ``FrameRequest`` with its MQTT 5 correlation data: nothing changes
for it. When frames come faster than publishes complete (a replay at full speed, many
cameras on one box, a burst after a stall), the frames that queue up while
``max_publishes`` earlier publishes wait for their PUBACKs leave together as one
``FrameBundle``. Python pays 50-150 us of CPU per MQTT message on each side, so under
load that is most of the transport's cost saved, with no frame ever held back to wait
for company (no linger timer).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from dataclasses import dataclass, field

import aiomqtt

from pipeline.protocol import MAX_BUNDLE_FRAMES, FrameBundle
from pipeline.service import publish
from pipeline.topics import request_properties

__all__ = ["FrameSender"]

DEFAULT_MAX_PUBLISHES = 4
# A worker computes at most max_batch frames at once (32 by default), and the shared
# subscription hands whole messages to workers: bigger bundles would only spread the
# load across workers more lumpily, for a per-message saving already ~97% taken.
DEFAULT_MAX_BUNDLE_FRAMES = 32
# Room for 32 float16 split activations (75 KB each at split 1), a quarter of the
# broker's packet limit. At 1 MiB a bundle of uint8 split codes (37.6 KB each) held at
# most 26 and averaged ~19, so workers computed batches of ~28 and the pipeline moved
# ~0.11 messages per frame instead of 0.06 (docs/performance.md).
DEFAULT_MAX_BUNDLE_BYTES = 4 * 1024 * 1024


@dataclass(slots=True)
class _Outgoing:
    client: aiomqtt.Client
    frame_id: str
    data: bytes
    sent: asyncio.Future[None] = field(repr=False)


class FrameSender:
    """Publishes encoded frame requests on ``topic``; ``send`` returns once the broker
    has the frame (QoS 1: its PUBACK), or raises what the publish raised."""

    def __init__(
        self,
        *,
        edge_id: str,
        topic: str,
        response_topic: str,
        mqtt5: bool,
        qos: int,
        bundle: bool = True,
        max_publishes: int = DEFAULT_MAX_PUBLISHES,
        max_frames: int = DEFAULT_MAX_BUNDLE_FRAMES,
        max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
    ) -> None:
        if max_publishes < 1 or not 1 <= max_frames <= MAX_BUNDLE_FRAMES or max_bytes < 1:
            raise ValueError("max_publishes, max_frames and max_bytes must be positive")
        self._edge_id = edge_id
        self._topic = topic
        self._response_topic = response_topic
        self._mqtt5 = mqtt5
        self._qos = qos
        self._bundle = bundle
        self._max_publishes = max_publishes
        self._max_frames = max_frames if bundle else 1
        self._max_bytes = max_bytes
        self._ready: collections.deque[_Outgoing] = collections.deque()
        self._flushers: set[asyncio.Task[None]] = set()
        self.messages = 0  # MQTT messages published
        self.frames = 0  # frames in them

    async def send(self, client: aiomqtt.Client, frame_id: str, data: bytes) -> None:
        """Publish one encoded ``FrameRequest``, alone or bundled with frames queued
        beside it. Cancelling the wait before the frame left withdraws it."""
        await self.submit(client, frame_id, data)

    def submit(self, client: aiomqtt.Client, frame_id: str, data: bytes) -> asyncio.Future[None]:
        """:meth:`send` without a coroutine per frame: the future completes once the
        frame is published; cancelling it before then withdraws the frame."""
        item = _Outgoing(client, frame_id, data, asyncio.get_running_loop().create_future())
        self._ready.append(item)
        if len(self._flushers) < self._max_publishes:
            task = asyncio.create_task(self._flush(), name=f"{self._edge_id}-send")
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return item.sent

    async def close(self) -> None:
        """Stop publishing; frames not yet sent fail with ``CancelledError``."""
        for task in list(self._flushers):
            task.cancel()
        for task in list(self._flushers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._ready:
            item = self._ready.popleft()
            if not item.sent.done():
                item.sent.cancel()

    async def _flush(self) -> None:
        while batch := self._take():
            try:
                await self._publish(batch)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting sender
                for item in batch:
                    if not item.sent.done():
                        item.sent.set_exception(exc)
            except asyncio.CancelledError:
                for item in batch:
                    if not item.sent.done():
                        item.sent.cancel()
                raise
            else:
                for item in batch:
                    if not item.sent.done():
                        item.sent.set_result(None)

    def _take(self) -> list[_Outgoing]:
        """The next message's frames: the oldest waiting one and those queued behind it
        for the same connection, up to the frame and byte limits."""
        batch: list[_Outgoing] = []
        size = 0
        while self._ready and len(batch) < self._max_frames:
            item = self._ready[0]
            if item.sent.done():  # withdrawn by its sender (deadline) before it left
                self._ready.popleft()
                continue
            if batch and (
                item.client is not batch[0].client or size + len(item.data) > self._max_bytes
            ):
                break
            batch.append(self._ready.popleft())
            size += len(item.data)
        return batch

    async def _publish(self, batch: list[_Outgoing]) -> None:
        if len(batch) == 1:
            data = batch[0].data
            correlation: bytes | None = batch[0].frame_id.encode()
        else:
            data = FrameBundle(
                edge_id=self._edge_id, frames=tuple(i.data for i in batch), columns=True
            ).to_bytes()
            correlation = None  # each member names its frame, and each column entry
        properties = request_properties(self._response_topic, correlation) if self._mqtt5 else None
        self.messages += 1
        self.frames += len(batch)
        await publish(batch[0].client, self._topic, data, qos=self._qos, properties=properties)
