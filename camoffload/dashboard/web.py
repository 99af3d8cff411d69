"""The dashboard's HTTP side: the page, its assets, a live stream, snapshots, controls.

Routes (Starlette; served by uvicorn in the same event loop as the MQTT feed):

* ``GET /``: the page; ``/static/...``: its script, styles and the vendored uPlot;
* ``GET /api/state``: everything, as JSON; ``GET /api/events``: server-sent events,
  the whole state first and then one patch per push interval;
* ``GET /snapshot/{edge}/{label}``: the latest retained snapshot JPEG;
* ``POST /api/control/{edge}/{feature}``: publish the body on the edge's
  ``control/{edge}/{feature}/set``; the edge's retained ``/state`` echoes what it did.

With a token (required when bound to anything but loopback), every request needs it:
``Authorization: Bearer <token>`` or the cookie ``/login`` sets. A control also needs
the header ``X-Camoffload: control``, which a form on another site cannot send, so a
logged-in browser cannot be made to switch an edge by a page elsewhere.
"""

from __future__ import annotations

import hmac
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.resources import files
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from camoffload.dashboard.hub import Hub
from pipeline.errors import ConfigError
from pipeline.topics import validate_level

__all__ = ["CONTROL_FEATURES", "COOKIE", "MAX_CONTROL_BYTES", "build_app"]

CONTROL_FEATURES = ("offload", "policy", "detect")
MAX_CONTROL_BYTES = 512
COOKIE = "camoffload_dashboard"

Publish = Callable[[str, str, str], Awaitable[bool]]  # edge, feature, payload -> sent?

_LOGIN = """<!doctype html><meta charset="utf-8"><title>camoffload: log in</title>
<link rel="stylesheet" href="static/dashboard.css">
<form method="post" action="login" class="login"><h1>camoffload</h1>
<label>Token <input name="token" type="password" autofocus></label>
<button>Log in</button>{error}</form>"""


def _static_dir() -> Path:
    return Path(str(files("camoffload.dashboard") / "static"))


def build_app(hub: Hub, publish: Publish, *, token: str | None = None) -> Starlette:
    static = _static_dir()

    async def page(request: Request) -> Response:
        return FileResponse(static / "index.html", headers={"Cache-Control": "no-cache"})

    async def state(request: Request) -> Response:
        return JSONResponse(hub.state.full())

    async def events(request: Request) -> Response:
        async def body() -> AsyncIterator[str]:
            async for data in hub.stream():
                if await request.is_disconnected():
                    return
                yield f"data: {data}\n\n" if data else ": keep-alive\n\n"

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(body(), media_type="text/event-stream", headers=headers)

    async def snapshot(request: Request) -> Response:
        jpeg = hub.state.snapshot(request.path_params["edge"], request.path_params["label"])
        if jpeg is None:
            return PlainTextResponse("no snapshot", status_code=404)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})

    async def control(request: Request) -> Response:
        edge, feature = request.path_params["edge"], request.path_params["feature"]
        if request.headers.get("x-camoffload") != "control":
            return PlainTextResponse("missing X-Camoffload: control", status_code=403)
        if feature not in CONTROL_FEATURES:
            return PlainTextResponse(f"no control {feature[:40]!r}", status_code=404)
        body = await request.body()
        try:
            validate_level(edge, "edge id")
            text = body.decode("utf-8").strip()
        except (ConfigError, UnicodeDecodeError) as exc:
            return PlainTextResponse(str(exc)[:200], status_code=400)
        if not text or len(body) > MAX_CONTROL_BYTES:
            return PlainTextResponse("a control takes 1 to 512 bytes of text", status_code=400)
        if not await publish(edge, feature, text):
            return PlainTextResponse("the broker is not connected", status_code=503)
        return PlainTextResponse("sent", status_code=202)

    async def login(request: Request) -> Response:
        error = ""
        if request.method == "POST" and token is not None:
            # The form by hand: Starlette's form parser needs python-multipart.
            form = urllib.parse.parse_qs((await request.body())[:4096].decode(errors="replace"))
            given = form.get("token", [""])[0]
            if hmac.compare_digest(given.encode(), token.encode()):
                response = RedirectResponse("./", status_code=303)
                response.set_cookie(
                    COOKIE,
                    token,
                    httponly=True,
                    samesite="strict",
                    secure=request.url.scheme == "https",
                )
                return response
            error = '<p class="error">That token is not right.</p>'
        return HTMLResponse(_LOGIN.format(error=error), status_code=401 if error else 200)

    routes = [
        Route("/", page),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/api/state", state),
        Route("/api/events", events),
        Route("/snapshot/{edge}/{label}", snapshot),
        Route("/api/control/{edge}/{feature}", control, methods=["POST"]),
        Route("/healthz", lambda request: PlainTextResponse("ok")),
        Mount("/static", StaticFiles(directory=static), name="static"),
    ]
    middleware = [] if token is None else [Middleware(_TokenCheck, token=token)]
    return Starlette(routes=routes, middleware=middleware)


class _TokenCheck:
    """Every request but the login page and its stylesheet carries the token. Plain
    ASGI, not Starlette's BaseHTTPMiddleware, so the event stream passes untouched."""

    def __init__(self, app: ASGIApp, *, token: str) -> None:
        self._app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request = Request(scope)
        path = request.url.path
        header = request.headers.get("authorization", "")
        given = (
            header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
        )
        if path in ("/login", "/healthz", "/static/dashboard.css") or hmac.compare_digest(
            given.encode(), self._token
        ):
            await self._app(scope, receive, send)
            return
        response: Response = PlainTextResponse("a token is needed", status_code=401)
        if request.method == "GET" and path == "/":
            response = RedirectResponse("login", status_code=303)
        await response(scope, receive, send)
