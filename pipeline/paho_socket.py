"""Reading the broker's socket in chunks, not a byte at a time; writing what is queued
in one ``send``.

paho-mqtt 2.x reads each packet's fixed header one byte per ``recv`` (the command byte,
then each byte of the remaining length), then the rest: four system calls for a PUBACK,
four or five for a PUBLISH. A worker answering one frame per message reads two packets
a frame (the request, the PUBACK of its reply): ~9 ``recv`` calls a frame, ~1.2 s of
the worker's 16.6 s in a profile of 10,000 such frames (``bench/profile_worker.py``).

:func:`install` gives paho's client a read buffer: one ``recv`` takes up to 256 KB, and
paho's small reads are served from what it holds. Two seams, both in paho's
``Client``: ``_sock_recv`` (one read) and ``loop_read`` (which reads at most as many
packets as are in flight, and then returns: with whole packets still in the buffer and
nothing more on the socket, the event loop would never call it again, so it goes on
until the buffer is empty). The buffer belongs to the socket it was read from: a new
connection starts empty.

On the way out paho writes each queued packet with its own ``send``: a worker's PUBACK
and its reply, queued in the same turn of the loop, are two system calls. Before paho
writes, the packets at the head of its queue that need nothing done once written (any
but a QoS 0 PUBLISH, whose ``on_publish`` paho calls then, and a DISCONNECT) are joined
into one, up to :data:`WRITE_CHUNK` bytes: one ``send``, and one TCP segment for the
broker to read instead of several.

Installed only over paho releases it was checked against, like
:mod:`pipeline.paho_publish`.
"""

from __future__ import annotations

from typing import Any

from paho.mqtt.client import Client as PahoClient
from paho.mqtt.enums import MQTTErrorCode

from pipeline.paho_publish import checked_release

__all__ = ["READ_CHUNK", "WRITE_CHUNK", "install", "installed"]

READ_CHUNK = 256 * 1024
WRITE_CHUNK = 64 * 1024

_paho_sock_recv = PahoClient._sock_recv
_paho_loop_read = PahoClient.loop_read
_paho_packet_write = PahoClient._packet_write
_PUBLISH = 0x30
_DISCONNECT = 0xE0


class _ReadBuffer:
    __slots__ = ("data", "sock")

    def __init__(self, sock: object) -> None:
        self.sock = sock
        self.data = bytearray()


def _buffer(client: PahoClient) -> _ReadBuffer:
    sock = client._sock  # the seam this module patches
    held: _ReadBuffer | None = client.__dict__.get("_camoffload_read_buffer")
    if held is None or held.sock is not sock:
        held = client.__dict__["_camoffload_read_buffer"] = _ReadBuffer(sock)
    return held


def _sock_recv(self: PahoClient, bufsize: int) -> bytes:
    held = _buffer(self)
    if held.data:
        out = bytes(held.data[:bufsize])
        del held.data[:bufsize]
        return out
    data: bytes = _paho_sock_recv(self, max(bufsize, READ_CHUNK))
    if len(data) <= bufsize:
        return data  # all of it asked for (b"": the connection closed)
    held.data += memoryview(data)[bufsize:]
    return data[:bufsize]


def _loop_read(self: PahoClient, max_packets: int = 1) -> MQTTErrorCode:
    while True:
        rc: MQTTErrorCode = _paho_loop_read(self, max_packets)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._sock is None:
            return rc
        if not _buffer(self).data:
            return rc


def _plain(packet: Any) -> bool:  # paho's _OutPacket, a TypedDict
    """Nothing to do once it is written, and nothing of it written yet."""
    command = packet["command"] & 0xF0
    quiet = command != _DISCONNECT and not (command == _PUBLISH and packet["qos"] == 0)
    return quiet and packet["pos"] == 0 and packet["to_process"] < WRITE_CHUNK


def _packet_write(self: PahoClient) -> MQTTErrorCode:
    queue = self._out_packet
    if len(queue) > 1 and _plain(queue[0]) and _plain(queue[1]):
        joined = [queue.popleft()]
        size = joined[0]["to_process"]
        while queue and _plain(queue[0]) and size + queue[0]["to_process"] <= WRITE_CHUNK:
            size += queue[0]["to_process"]
            joined.append(queue.popleft())
        queue.appendleft(
            {
                "command": 0,  # none: paho does nothing more once it is written
                "mid": 0,
                "qos": 0,
                "pos": 0,
                "to_process": size,
                "packet": b"".join(bytes(p["packet"]) for p in joined),
                "info": None,
            }
        )
    rc: MQTTErrorCode = _paho_packet_write(self)
    return rc


def install() -> bool:
    """Buffer every paho client's reads in this process; True if in use."""
    if installed():
        return True
    if not checked_release("paho's byte-at-a-time reads and a send per packet"):
        return False
    client: Any = PahoClient
    client._sock_recv = _sock_recv
    client.loop_read = _loop_read
    client._packet_write = _packet_write
    return True


def installed() -> bool:
    return PahoClient._sock_recv is _sock_recv  # type: ignore[comparison-overlap,unused-ignore]
