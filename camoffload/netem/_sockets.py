"""The socket side of the proxy: listening, dialling the upstream, and the two pumps
(socket to pipe, pipe to socket) that carry one direction of one connection."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from camoffload.netem._link import Pipe
from pipeline.errors import TransportError

__all__ = ["Connection", "connect", "listen_on", "receive", "send"]


class Connection:
    """One client connection and, once dialled, its upstream socket."""

    def __init__(self, number: int, client: socket.socket, peer: str) -> None:
        self.number = number
        self.client = client
        self.peer = peer
        self.upstream: socket.socket | None = None
        self.pipes: list[Pipe] = []
        self.task: asyncio.Task[None] | None = None
        self.reset = False  # close with RST rather than FIN

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.discard()
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            if self.reset:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()


async def receive(src: socket.socket, pipe: Pipe) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await pipe.wait_for_room()
        data = await loop.sock_recv(src, pipe.link.chunk_size())
        if not data:
            pipe.put_eof(loop.time())
            return
        pipe.put(loop.time(), data)


async def send(pipe: Pipe, dst: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    while True:
        data, eof = await pipe.take()
        if data:
            await loop.sock_sendall(dst, data)
            pipe.delivered(len(data))
        if eof:
            dst.shutdown(socket.SHUT_WR)
            return


def listen_on(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise TransportError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


async def connect(host: str, port: int) -> socket.socket:
    """A non-blocking, TCP_NODELAY socket connected to ``host:port`` (OSError if not)."""
    loop = asyncio.get_running_loop()
    error = OSError(f"{host}:{port} has no address")
    for family, kind, proto, _, address in await loop.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        sock = socket.socket(family, kind, proto)
        connected = False
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, address)
            connected = True
        except OSError as exc:
            error = exc
        finally:
            if not connected:
                sock.close()
        if connected:
            return sock
    raise error
