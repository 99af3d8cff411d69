"""The edge node: capture frames, offload them over MQTT, decide each exactly once.

Tasks (one TaskGroup)::

    capture   source -> (in-flight slot) -> one offload task per frame
    replies   results topic -> the waiting frame's future
    status    retained edge status every second

A frame's final decision is ``cloud`` when a result arrives before its deadline and a
local fallback otherwise (timeout, busy, error). Until the models issue gives the
edge a local model, the fallback carries no label.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

import aiomqtt
from aiomqtt import Will

from edge_node.ledger import Ledger, LedgerSummary
from edge_node.pacing import Pacer, frames_per_second
from edge_node.sources import CapturedFrame, FrameSource
from pipeline.codecs import encode_jpeg
from pipeline.config import Config
from pipeline.errors import CodecError, ProtocolError
from pipeline.mqtt import connect_with_retry, make_client, payload_bytes, translate_mqtt_errors
from pipeline.protocol import (
    Decision,
    EdgeStatus,
    ErrorCode,
    Event,
    FrameRequest,
    PayloadCodec,
    Reply,
    Result,
    TensorDType,
    decode_reply,
)
from pipeline.topics import request_properties

__all__ = ["EdgeNode"]

logger = logging.getLogger(__name__)

_BUSY_CODES = frozenset({ErrorCode.BUSY, ErrorCode.SHUTTING_DOWN})


def _decision_for(reply: Reply) -> Decision:
    if isinstance(reply, Result):
        return Decision.CLOUD
    if reply.code in _BUSY_CODES:
        return Decision.LOCAL_AFTER_BUSY
    if reply.code is ErrorCode.EXPIRED:
        return Decision.LOCAL_AFTER_TIMEOUT
    return Decision.LOCAL_AFTER_ERROR


class EdgeNode:
    def __init__(self, config: Config, source: FrameSource, ledger: Ledger) -> None:
        self._config = config
        self._cfg = config.edge
        self._topics = config.topics
        self._source = source
        self.ledger = ledger
        self._mqtt5 = config.broker.protocol == "5"
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self._slots = asyncio.Semaphore(self._cfg.max_in_flight)
        self._run_token = secrets.token_hex(4)  # frame ids stay unique across restarts
        self.bad_replies = 0
        self.late_replies = 0

    @property
    def edge_id(self) -> str:
        return self._cfg.edge_id

    async def run(
        self, *, max_frames: int | None = None, stop: asyncio.Event | None = None
    ) -> LedgerSummary:
        """Capture until the source ends, ``max_frames`` or ``stop``; then let every
        frame in flight reach its decision and return the ledger's summary."""
        client = make_client(
            self._config.broker,
            client_id=self.edge_id,
            will=Will(
                self._topics.edge_status(self.edge_id),
                self._status(online=False).to_bytes(),
                qos=1,
                retain=True,
            ),
        )
        async with connect_with_retry(
            client,
            what=f"edge {self.edge_id}",
            give_up_after_s=self._config.broker.connect_timeout_s,
        ):
            with translate_mqtt_errors(f"edge {self.edge_id}"):
                await client.subscribe(self._topics.results(self.edge_id), qos=self._cfg.qos)
                await self._publish_status(client, online=True)
            async with asyncio.TaskGroup() as tg:
                replies = tg.create_task(self._route_replies(client), name="edge-replies")
                status = tg.create_task(self._status_loop(client), name="edge-status")
                try:
                    await self._capture(client, max_frames, stop)
                finally:
                    replies.cancel()
                    status.cancel()
            with contextlib.suppress(aiomqtt.MqttError):
                await self._publish_status(client, online=False)
        return self.ledger.summary()

    async def _capture(
        self, client: aiomqtt.Client, max_frames: int | None, stop: asyncio.Event | None
    ) -> None:
        pacer = Pacer(frames_per_second(self._cfg.rate, self._source.fps))
        live = self._source.live
        seq = 0
        try:
            async with asyncio.TaskGroup() as frames:
                while (max_frames is None or seq < max_frames) and not (stop and stop.is_set()):
                    if not live:
                        # Replaying a file: wait for a slot before reading, so the
                        # deadline clock starts when the frame can actually be sent.
                        await self._slots.acquire()
                    frame = await asyncio.to_thread(self._source.read)
                    if frame is None:
                        if not live:
                            self._slots.release()
                        break
                    frame_id = f"{self._run_token}-{seq}"
                    self.ledger.capture(
                        frame_id, seq=seq, capture_ts=frame.capture_ts, true_label=frame.true_label
                    )
                    if live and self._slots.locked():
                        # A camera never waits for the cloud: drop the frame, and count it.
                        await self._finish(client, frame_id, seq, Decision.DROPPED)
                    else:
                        if live:
                            await self._slots.acquire()  # free: checked just above
                        frames.create_task(
                            self._offload(client, frame_id, seq, frame), name=f"frame-{seq}"
                        )
                    seq += 1
                    await pacer.wait()
        finally:
            await asyncio.to_thread(self._source.close)

    async def _offload(
        self, client: aiomqtt.Client, frame_id: str, seq: int, frame: CapturedFrame
    ) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        self._pending[frame_id] = future
        bytes_sent = 0
        sent_mono = time.monotonic()
        try:
            payload = await asyncio.to_thread(encode_jpeg, frame.image, self._cfg.jpeg_quality)
            request = FrameRequest(
                frame_id=frame_id,
                edge_id=self.edge_id,
                seq=seq,
                capture_ts=frame.capture_ts,
                deadline_ts=frame.capture_ts + self._cfg.deadline_ms / 1000,
                codec=PayloadCodec.JPEG,
                quality=self._cfg.jpeg_quality,
                shape=tuple(frame.image.shape),
                dtype=TensorDType.UINT8,
                payload=payload,
                model=self._cfg.model,
            )
            data = request.to_bytes()
            properties = None
            if self._mqtt5:
                properties = request_properties(
                    self._topics.results(self.edge_id), frame_id.encode()
                )
            sent_mono = time.monotonic()
            await client.publish(
                self._topics.frames(self.edge_id), data, qos=self._cfg.qos, properties=properties
            )
            bytes_sent = len(data)
            async with asyncio.timeout_at(
                loop.time() + max(0.0, request.deadline_ts - time.time())
            ):
                reply = await future
        except TimeoutError:
            await self._finish(
                client, frame_id, seq, Decision.LOCAL_AFTER_TIMEOUT, bytes_sent=bytes_sent
            )
        except (CodecError, ProtocolError, aiomqtt.MqttError) as exc:
            logger.warning("edge %s: frame %s not offloaded: %s", self.edge_id, frame_id, exc)
            await self._finish(
                client,
                frame_id,
                seq,
                Decision.LOCAL_AFTER_ERROR,
                bytes_sent=bytes_sent,
                detail=str(exc),
            )
        else:
            rtt_ms = (time.monotonic() - sent_mono) * 1000
            if isinstance(reply, Result):
                await self._finish(
                    client,
                    frame_id,
                    seq,
                    Decision.CLOUD,
                    label=reply.label,
                    confidence=reply.confidence,
                    bytes_sent=bytes_sent,
                    rtt_ms=rtt_ms,
                    model=reply.model,
                )
            else:
                await self._finish(
                    client,
                    frame_id,
                    seq,
                    _decision_for(reply),
                    bytes_sent=bytes_sent,
                    detail=f"{reply.code.value}: {reply.message}",
                )
        finally:
            self._pending.pop(frame_id, None)
            self._slots.release()

    async def _finish(
        self,
        client: aiomqtt.Client,
        frame_id: str,
        seq: int,
        decision: Decision,
        *,
        label: int | None = None,
        confidence: float | None = None,
        bytes_sent: int = 0,
        rtt_ms: float | None = None,
        model: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Record the frame's one final decision and announce it on the events topic."""
        now = time.time()
        true_label = self.ledger.decide(
            frame_id,
            decision,
            decided_ts=now,
            label=label,
            confidence=confidence,
            bytes_sent=bytes_sent,
            rtt_ms=rtt_ms,
            detail=detail,
        )
        event = Event(
            edge_id=self.edge_id,
            frame_id=frame_id,
            seq=seq,
            ts=now,
            decision=decision,
            bytes_sent=bytes_sent,
            label=label,
            confidence=confidence,
            model=model,
            latency_ms=rtt_ms,
            true_label=true_label,
        )
        # Events are informational (the ledger is the record): QoS 0, and a broken
        # connection must not turn a decided frame into an exception.
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(self._topics.events(self.edge_id), event.to_bytes(), qos=0)

    async def _route_replies(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                reply = decode_reply(payload_bytes(message))
            except ProtocolError as exc:
                self.bad_replies += 1
                logger.warning("edge %s: bad reply on %s: %s", self.edge_id, message.topic, exc)
                continue
            frame_id = reply.frame_id or _correlation_id(message)
            future = self._pending.get(frame_id) if frame_id else None
            if future is None or future.done():
                self.late_replies += 1  # answered after its deadline, or not ours
                continue
            future.set_result(reply)

    def _status(self, *, online: bool) -> EdgeStatus:
        counts = self.ledger.counts()
        return EdgeStatus(
            edge_id=self.edge_id,
            online=online,
            ts=time.time(),
            captured=counts.captured,
            in_flight=len(self._pending),
            offloaded=counts.offloaded,
            decided=counts.decided,
        )

    async def _publish_status(self, client: aiomqtt.Client, *, online: bool) -> None:
        await client.publish(
            self._topics.edge_status(self.edge_id),
            self._status(online=online).to_bytes(),
            qos=1,
            retain=True,
        )

    async def _status_loop(self, client: aiomqtt.Client) -> None:
        while True:
            await asyncio.sleep(1.0)
            with contextlib.suppress(aiomqtt.MqttError):
                await self._publish_status(client, online=True)


def _correlation_id(message: aiomqtt.Message) -> str | None:
    """The frame id from MQTT 5 correlation data, for error replies without one."""
    data = getattr(message.properties, "CorrelationData", None)
    if isinstance(data, bytes):
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode()
    return None
