"""Reading the broker's socket in chunks, not a byte at a time.

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
connection starts empty. Installed only over paho releases it was checked against,
like :mod:`pipeline.paho_publish`.
"""

from __future__ import annotations

import logging
from typing import Any

import paho.mqtt
from paho.mqtt.client import Client as PahoClient
from paho.mqtt.enums import MQTTErrorCode

from pipeline.paho_publish import CHECKED_PAHO_VERSIONS

__all__ = ["READ_CHUNK", "install", "installed"]

logger = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024

_paho_sock_recv = PahoClient._sock_recv
_paho_loop_read = PahoClient.loop_read


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


def install() -> bool:
    """Buffer every paho client's reads in this process; True if in use."""
    if installed():
        return True
    if paho.mqtt.__version__ not in CHECKED_PAHO_VERSIONS:
        logger.warning(
            "paho-mqtt %s is not a release camoffload was checked against (%s): keeping "
            "paho's byte-at-a-time socket reads",
            paho.mqtt.__version__,
            ", ".join(sorted(CHECKED_PAHO_VERSIONS)),
        )
        return False
    client: Any = PahoClient
    client._sock_recv = _sock_recv
    client.loop_read = _loop_read
    return True


def installed() -> bool:
    return PahoClient._sock_recv is _sock_recv  # type: ignore[comparison-overlap,unused-ignore]
