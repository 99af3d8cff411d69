"""One Prometheus ``/metrics`` endpoint per process, for the edge and the worker alike."""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

__all__ = ["MetricsEndpoint"]

logger = logging.getLogger(__name__)

_JOIN_TIMEOUT_S = 5.0


class MetricsEndpoint:
    """Serves ``registry`` over HTTP from a daemon thread until :meth:`close`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int | None:
        """The bound port while serving, else None."""
        return None if self._server is None else int(self._server.server_port)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Start serving; returns the bound port (``port`` 0 picks a free one)."""
        if self._server is not None:
            raise RuntimeError("the metrics endpoint is already serving")
        self._server, self._thread = start_http_server(port, addr=addr, registry=self._registry)
        bound = int(self._server.server_port)
        logger.info("metrics on http://%s:%d/metrics", addr, bound)
        return bound

    def close(self) -> None:
        """Stop the server and join its thread; safe to call again (blocking: call it
        from a thread when the event loop runs)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=_JOIN_TIMEOUT_S)
