"""Matching workers' replies to the frames waiting for them.

Each offloaded frame registers a future under its frame id. A reply completes it only
if it decodes, its correlation data (when present) names the same frame, and the frame
is still waiting: malformed, foreign, late and duplicate replies are counted and
logged, and never touch a decided frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiomqtt

from pipeline.errors import LinkLostError, ProtocolError
from pipeline.mqtt import payload_bytes
from pipeline.protocol import Reply, decode_replies

__all__ = ["LinkLostError", "ReplyRouter"]

logger = logging.getLogger(__name__)


class ReplyRouter:
    def __init__(self, edge_id: str) -> None:
        self._edge_id = edge_id
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self.bad_replies = 0
        self.late_replies = 0

    def __len__(self) -> int:
        return len(self._pending)

    def expect(self, frame_id: str) -> asyncio.Future[Reply]:
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[frame_id] = future
        return future

    def forget(self, frame_id: str) -> None:
        self._pending.pop(frame_id, None)

    def fail_all(self, why: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(LinkLostError(why))

    def on_message(self, message: aiomqtt.Message) -> None:
        try:
            replies, errors = decode_replies(payload_bytes(message))
        except ProtocolError as broken:
            errors, replies = [broken], []
        for error in errors:
            self.bad_replies += 1
            logger.warning("edge %s: bad reply on %s: %s", self._edge_id, message.topic, error)
        # A bundle's members name their frames; correlation data is a lone reply's.
        correlation = correlation_id(message) if len(replies) == 1 and not errors else None
        for reply in replies:
            self._route(reply, correlation)

    def _route(self, reply: Reply, correlation: str | None) -> None:
        if reply.frame_id and correlation and correlation != reply.frame_id:
            self.bad_replies += 1
            logger.warning(
                "edge %s: reply for %s carries correlation data %r: ignored",
                self._edge_id,
                reply.frame_id,
                correlation,
            )
            return
        frame_id = reply.frame_id or correlation
        future = self._pending.get(frame_id) if frame_id else None
        if future is None or future.done():
            self.late_replies += 1
            logger.info(
                "edge %s: reply for %s ignored: late, duplicate or not ours",
                self._edge_id,
                frame_id,
            )
            return
        future.set_result(reply)


def correlation_id(message: aiomqtt.Message) -> str | None:
    """The frame id from MQTT 5 correlation data, if the message carries it."""
    data = getattr(message.properties, "CorrelationData", None)
    if isinstance(data, bytes):
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode()
    return None
