"""Publishing through aiomqtt with camoffload's errors: the boundary for publishes made
outside a session's own message loop (an edge's frames, events and status)."""

from __future__ import annotations

import aiomqtt
from paho.mqtt.properties import Properties

from pipeline.errors import TransportError

__all__ = ["publish"]


async def publish(
    client: aiomqtt.Client,
    topic: str,
    payload: bytes | str,
    *,
    qos: int,
    retain: bool = False,
    properties: Properties | None = None,
) -> None:
    """``client.publish``; a failed publish (connection lost, refused) raises
    :class:`TransportError` naming the topic."""
    try:
        await client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
    except aiomqtt.MqttError as exc:
        raise TransportError(f"publish on {topic}: {exc}") from exc
