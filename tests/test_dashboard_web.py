"""The dashboard's hub (batched patches, bounded page queues) and its web app (page,
state, snapshots, controls, the token), on real wire messages, without a broker."""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import cv2
import numpy as np
import pytest

from camoffload.dashboard.hub import QUEUE_PATCHES, Hub
from camoffload.dashboard.server import check_binding, subscriptions
from camoffload.dashboard.state import DashboardState
from camoffload.dashboard.web import COOKIE, MAX_CONTROL_BYTES, build_app
from pipeline.errors import ConfigError
from pipeline.protocol import EdgeStatus

with warnings.catch_warnings():  # starlette warns that it would rather have httpx2
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

P = "pfx"
TIMEOUT_S = 5.0
JPEG: bytes = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
CONTROL = {"X-Camoffload": "control"}


def _status(edge: str = "door") -> bytes:
    return EdgeStatus(edge_id=edge, online=True, ts=time.time()).to_bytes()


class Publisher:
    """The publish callback: records what it was asked to send, answers ``ok``."""

    def __init__(self) -> None:
        self.ok = True
        self.sent: list[tuple[str, str, str]] = []

    async def __call__(self, edge: str, feature: str, text: str) -> bool:
        self.sent.append((edge, feature, text))
        return self.ok


async def _next(stream: AsyncIterator[str]) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(anext(stream), TIMEOUT_S))
    return message


# -- the hub ---------------------------------------------------------------------------


def test_a_stream_yields_the_full_state_first_then_a_patch_after_a_message() -> None:
    async def scenario() -> None:
        hub = Hub(DashboardState(P), push_interval_s=0.005)
        hub.apply(f"{P}/status/edges/door", _status("door"))
        pushing = asyncio.create_task(hub.run())
        stream = hub.stream()
        first = await _next(stream)
        assert first["type"] == "full"
        assert list(first["edges"]) == ["door"]
        assert hub.pages == 1
        hub.apply(f"{P}/status/edges/yard", _status("yard"))
        patch = await _next(stream)
        while "yard" not in patch["edges"]:  # the door's own patch may come first
            patch = await _next(stream)
        assert patch["type"] == "patch"
        assert len(patch["edges"]["yard"]["points"]) == 1
        pushing.cancel()
        hub.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(stream), TIMEOUT_S)
        assert hub.pages == 0

    asyncio.run(scenario())


def test_many_messages_within_one_interval_make_one_patch() -> None:
    async def scenario() -> None:
        hub = Hub(DashboardState(P), push_interval_s=0.005)
        pushing = asyncio.create_task(hub.run())
        stream = hub.stream()
        assert (await _next(stream))["type"] == "full"
        for i in range(5):
            hub.apply(f"{P}/status/edges/e{i}", _status(f"e{i}"))
        hub.set_broker(True)
        patch = await _next(stream)
        assert sorted(patch["edges"]) == [f"e{i}" for i in range(5)]
        assert patch["broker"] is True
        hub.apply(f"{P}/status/edges/marker", _status("marker"))
        patch = await _next(stream)  # the next patch is the marker's alone
        assert list(patch["edges"]) == ["marker"]
        pushing.cancel()

    asyncio.run(scenario())


def test_a_page_that_never_reads_gets_the_full_state_instead_of_a_long_queue() -> None:
    async def scenario() -> None:
        hub = Hub(DashboardState(P), push_interval_s=0.001)
        pushing = asyncio.create_task(hub.run())
        slow, quick = hub.stream(), hub.stream()
        await _next(slow)
        await _next(quick)
        queue = next(iter(hub._pages))  # both queues see the same pushes: check either
        for i in range(QUEUE_PATCHES + 1):
            hub.apply(f"{P}/status/edges/e{i}", _status(f"e{i}"))
            patch = await _next(quick)  # pushed to the slow page too
            assert list(patch["edges"]) == [f"e{i}"]
            assert queue.qsize() <= QUEUE_PATCHES
        caught_up = await _next(slow)
        assert caught_up["type"] == "full"
        assert len(caught_up["edges"]) == QUEUE_PATCHES + 1
        pushing.cancel()

    asyncio.run(scenario())


def test_close_ends_every_stream() -> None:
    async def scenario() -> None:
        hub = Hub(DashboardState(P))
        streams = [hub.stream(), hub.stream()]
        for stream in streams:
            await _next(stream)
        assert hub.pages == 2
        hub.close()
        for stream in streams:
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(anext(stream), TIMEOUT_S)
        assert hub.pages == 0
        late = hub.stream()  # a page after the close gets the state, then the end
        assert (await _next(late))["type"] == "full"
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(late), TIMEOUT_S)

    asyncio.run(scenario())


def test_an_idle_stream_sends_keep_alives() -> None:
    async def scenario() -> None:
        hub = Hub(DashboardState(P))
        stream = hub.stream(keepalive_s=0.01)
        await _next(stream)
        assert await asyncio.wait_for(anext(stream), TIMEOUT_S) == ""
        assert await asyncio.wait_for(anext(stream), TIMEOUT_S) == ""
        hub.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(stream), TIMEOUT_S)

    asyncio.run(scenario())


# -- the web app -----------------------------------------------------------------------


@pytest.fixture
def hub() -> Hub:
    hub = Hub(DashboardState(P))
    hub.apply(f"{P}/status/edges/door", _status("door"))
    return hub


@pytest.fixture
def publisher() -> Publisher:
    return Publisher()


@pytest.fixture
def client(hub: Hub, publisher: Publisher) -> Iterator[TestClient]:
    with TestClient(build_app(hub, publisher), follow_redirects=False) as client:
        yield client


@pytest.fixture
def guarded(hub: Hub, publisher: Publisher) -> Iterator[TestClient]:
    app = build_app(hub, publisher, token="s3cret")
    with TestClient(app, follow_redirects=False) as client:
        yield client


def test_the_page_and_its_scripts_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "dashboard.js" in page.text
    for script in ("/static/dashboard.js", "/static/vendor/uPlot.iife.min.js"):
        response = client.get(script)
        assert response.status_code == 200, script
        assert "javascript" in response.headers["content-type"], script
        assert response.content
    assert client.get("/healthz").text == "ok"


def test_api_state_returns_the_whole_state(client: TestClient, hub: Hub) -> None:
    hub.apply(f"{P}/control/door/offload/state", b"off")
    state = client.get("/api/state").json()
    assert state["type"] == "full"
    assert state["edges"]["door"]["controls"] == {"offload": "off"}
    assert state["edges"]["door"]["online"] is True


def test_the_event_stream_sends_the_state_as_server_sent_events(
    client: TestClient, hub: Hub
) -> None:
    hub.close()  # the stream then ends after the full state
    response = client.get("/api/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.startswith("data: ")
    assert response.text.endswith("\n\n")
    assert json.loads(response.text[len("data: ") :])["edges"]["door"]["id"] == "door"


def test_a_snapshot_is_404_until_there_is_one(client: TestClient, hub: Hub) -> None:
    assert client.get("/snapshot/door/person").status_code == 404
    hub.apply(f"{P}/snapshots/door/person", JPEG)
    response = client.get("/snapshot/door/person")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content == JPEG
    assert client.get("/snapshot/yard/person").status_code == 404


def test_a_control_is_published_only_with_its_header(
    client: TestClient, publisher: Publisher
) -> None:
    assert client.post("/api/control/door/offload", content=b"off").status_code == 403
    assert publisher.sent == []
    response = client.post("/api/control/door/offload", content=b" off\n", headers=CONTROL)
    assert response.status_code == 202
    assert publisher.sent == [("door", "offload", "off")]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/control/door/self-destruct", b"on", 404),
        ("/api/control/door/offload", b"", 400),
        ("/api/control/door/offload", b"  \n", 400),
        ("/api/control/door/offload", b"x" * (MAX_CONTROL_BYTES + 1), 400),
        ("/api/control/door/offload", b"\xff\xfe", 400),
        ("/api/control/a%2Fb/offload", b"on", 404),
        ("/api/control/door/sub/offload", b"on", 404),
    ],
)
def test_a_bad_control_is_refused_and_not_published(
    client: TestClient, publisher: Publisher, path: str, body: bytes, status: int
) -> None:
    assert client.post(path, content=body, headers=CONTROL).status_code == status
    assert publisher.sent == []


@pytest.mark.parametrize("edge", ["a+b", "a%23b"])
def test_an_edge_id_with_a_wildcard_is_a_400(
    client: TestClient, publisher: Publisher, edge: str
) -> None:
    assert client.post(
        f"/api/control/{edge}/offload", content=b"on", headers=CONTROL
    ).status_code in (400, 404)
    assert publisher.sent == []


def test_a_control_at_the_size_limit_is_sent_and_a_lost_broker_is_a_503(
    client: TestClient, publisher: Publisher
) -> None:
    text = "x" * MAX_CONTROL_BYTES
    assert client.post("/api/control/door/policy", content=text, headers=CONTROL).status_code == 202
    assert publisher.sent == [("door", "policy", text)]
    publisher.ok = False
    response = client.post("/api/control/door/detect", content=b"on", headers=CONTROL)
    assert response.status_code == 503


def test_with_a_token_every_request_needs_it(guarded: TestClient) -> None:
    assert guarded.get("/api/state").status_code == 401
    assert guarded.get("/api/state", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert guarded.get("/api/state", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    guarded.cookies.set(COOKIE, "wrong")
    assert guarded.get("/api/state").status_code == 401
    guarded.cookies.set(COOKIE, "s3cret")
    assert guarded.get("/api/state").status_code == 200
    guarded.cookies.clear()
    page = guarded.get("/")
    assert page.status_code == 303
    assert page.headers["location"] == "login"
    assert guarded.get("/snapshot/door/person").status_code == 401
    assert (
        guarded.post("/api/control/door/offload", content=b"on", headers=CONTROL).status_code == 401
    )
    assert guarded.get("/static/dashboard.css").status_code == 200  # the login page's
    assert guarded.get("/static/dashboard.js").status_code == 401
    assert guarded.get("/healthz").status_code == 200
    login = guarded.get("/login")
    assert login.status_code == 200
    assert 'name="token"' in login.text


def test_logging_in_sets_the_cookie_only_for_the_right_token(guarded: TestClient) -> None:
    wrong = guarded.post("/login", data={"token": "guess"})
    assert wrong.status_code == 401
    assert "set-cookie" not in wrong.headers
    assert "not right" in wrong.text
    right = guarded.post("/login", data={"token": "s3cret"})
    assert right.status_code == 303
    assert right.headers["location"] == "./"
    cookie = right.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=s3cret")
    assert "httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    assert guarded.get("/api/state").status_code == 200  # the client keeps the cookie
    assert guarded.get("/").status_code == 200


# -- the server's checks ---------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_needs_no_token(host: str) -> None:
    check_binding(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "", "example.org"])
def test_anything_but_loopback_needs_a_token(host: str) -> None:
    with pytest.raises(ConfigError, match="needs a token"):
        check_binding(host, None)
    with pytest.raises(ConfigError):
        check_binding(host, "")
    check_binding(host, "s3cret")


def test_the_subscriptions_cover_everything_the_page_shows_under_the_prefix() -> None:
    topics = dict(subscriptions(P))
    assert set(topics) == {
        f"{P}/status/edges/+",
        f"{P}/status/workers/+",
        f"{P}/events/+",
        f"{P}/objects/+",
        f"{P}/snapshots/+/+",
        f"{P}/counts/+/+",
        f"{P}/control/+/+/state",
    }
    assert topics[f"{P}/events/+"] == 0  # many and informational
    assert topics[f"{P}/status/edges/+"] == 1
