"""``camoffload dashboard``: the MQTT feed and the web server in one event loop.

The dashboard logs in to the broker like any other component (``broker.username`` is
the hardened broker's ``dashboard`` identity, whose ACL reads status, events, objects,
snapshots, counts and control states, and writes only ``control/+/+/set``). It
subscribes, keeps :class:`DashboardState`, and serves the page with uvicorn. A lost
broker is reconnected to (the page says so meanwhile); SIGINT or SIGTERM ends the
page streams and stops both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
from collections.abc import Callable, Iterator

import aiomqtt
import uvicorn

from camoffload.dashboard.hub import Hub
from camoffload.dashboard.state import DashboardState
from camoffload.dashboard.web import build_app
from pipeline.config import Config
from pipeline.errors import ConfigError, TransportError
from pipeline.service import BrokerLink, publish
from pipeline.topics import Topics

__all__ = ["check_binding", "serve_dashboard", "subscriptions"]

logger = logging.getLogger(__name__)


def subscriptions(prefix: str) -> list[tuple[str, int]]:
    """What the dashboard reads, and at which QoS (decisions are many and informational)."""
    p = prefix
    return [
        (f"{p}/status/edges/+", 1),
        (f"{p}/status/workers/+", 1),
        (f"{p}/events/+", 0),
        (f"{p}/objects/+", 1),
        (f"{p}/snapshots/+/+", 1),
        (f"{p}/counts/+/+", 1),
        (f"{p}/control/+/+/state", 1),
    ]


def check_binding(host: str, token: str | None) -> None:
    """Loopback may go without a token; anything else may not."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not token:
        raise ConfigError(
            f"the dashboard on {host} needs a token: set CAMOFFLOAD_DASHBOARD_TOKEN or "
            "give --token-file (it binds 127.0.0.1 without one)"
        )


async def serve_dashboard(
    config: Config,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    stop: asyncio.Event,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run until ``stop``; ``on_ready`` gets the page's URL once it is served."""
    check_binding(host, token)
    topics = Topics(config.prefix)
    hub = Hub(DashboardState(config.prefix))
    link = BrokerLink(
        config.broker,
        client_id=f"dashboard-{secrets.token_hex(4)}",
        what="dashboard",
        on_lost=lambda why: hub.set_broker(False),
    )

    async def session(client: aiomqtt.Client) -> None:
        for topic_filter, qos in subscriptions(config.prefix):
            await client.subscribe(topic_filter, qos=qos)
        hub.set_broker(True)
        async for message in client.messages:
            payload = message.payload
            if isinstance(payload, bytes | bytearray):
                hub.apply(message.topic.value, bytes(payload))

    async def send_control(edge: str, feature: str, text: str) -> bool:
        client = link.client
        if client is None:
            return False
        try:
            await publish(client, topics.control(edge, feature, "set"), text, qos=1)
        except TransportError as exc:
            logger.warning("dashboard: control %s/%s not sent: %s", edge, feature, exc)
            return False
        logger.info("dashboard: %s %s set to %r", edge, feature, text[:60])
        return True

    # The socket is bound here, not by uvicorn: a port in use is then a clear error
    # (uvicorn would exit the process), and port 0 gives the port it got.
    listener = _listen(host, port)
    server = _Server(
        uvicorn.Config(
            build_app(hub, send_control, token=token),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
    )
    link_task = asyncio.create_task(link.run(session, stop=stop), name="dashboard-link")
    push = asyncio.create_task(hub.run(), name="dashboard-push")
    serving: asyncio.Task[None] | None = None
    try:
        await link.wait_connected(link_task)
        serving = asyncio.create_task(server.serve(sockets=[listener]), name="dashboard-http")
        url = f"http://{host}:{listener.getsockname()[1]}/"
        logger.info("dashboard: serving %s (broker %s)", url, config.broker.url)
        if on_ready is not None:
            on_ready(url)
        stopped = asyncio.create_task(stop.wait(), name="dashboard-stop")
        await asyncio.wait({serving, stopped, link_task}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
    finally:
        hub.close()
        server.should_exit = True
        if serving is not None:
            await serving
        listener.close()
        for task in (push, link_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TransportError):
                await task


class _Server(uvicorn.Server):
    """uvicorn without its signal handling: the command's own handler (first signal
    stops, second aborts) stays in charge. uvicorn would otherwise catch SIGTERM itself
    and raise it again once stopped, which reads as a second signal."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn before 0.29
        pass


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise ConfigError(f"the dashboard cannot listen on {host}:{port}: {exc}") from exc
    listener.setblocking(False)
    return listener
