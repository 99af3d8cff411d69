"""``camoffload dashboard`` on the hardened broker, logged in as its ``dashboard``
identity: it reads a device's status, events, objects, snapshots, counts and control
states, and the one thing it publishes, a control's ``set``, reaches the device."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from broker import (
    Provisioned,
    free_port,
    hardened_broker,
    identities_from,
    init_broker_folder,
)
from camoffload.dashboard.server import serve_dashboard
from pipeline.config import Config, load_config
from pipeline.mqtt import make_client
from pipeline.protocol import Decision, EdgeStatus, Event
from pipeline.topics import Topics
from tests._helpers import next_message

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provisioned]:
    folder = tmp_path_factory.mktemp("dash-hardened") / "broker"
    port = free_port()
    made = init_broker_folder(
        folder,
        identities_from(devices=["camA"], workers=["worker1"], dashboards=["dash1"]),
        prefix=f"test-{uuid.uuid4().hex[:8]}",
        port=port,
    )
    with hardened_broker(folder, port=port):
        yield made


def _config(made: Provisioned, name: str) -> Config:
    """The settings ``broker init`` wrote for ``name``, as that client loads them."""
    return load_config(made.client(name).config_file, env={})


async def _state_until(url: str, ready: Any, timeout_s: float = 30) -> dict[str, Any]:
    """Poll /api/state until ``ready(state)``; the last state."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as http:
        while True:
            state: dict[str, Any] = (await http.get(url + "api/state")).json()
            if ready(state) or time.monotonic() > deadline:
                return state
            await asyncio.sleep(0.1)


def test_the_dashboard_identity_reads_a_device_and_switches_it(
    provisioned: Provisioned,
) -> None:
    topics = Topics(provisioned.prefix)
    jpeg = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes()

    async def scenario() -> tuple[dict[str, Any], bytes, int]:
        stop = asyncio.Event()
        urls: list[str] = []
        dashboard = asyncio.create_task(
            serve_dashboard(_config(provisioned, "dash1"), port=0, stop=stop, on_ready=urls.append)
        )
        async with make_client(_config(provisioned, "camA").broker, client_id="camA") as cam:
            await cam.subscribe(topics.control_set_filter("camA"), qos=1)
            while not urls:
                assert not dashboard.done(), dashboard
                await asyncio.sleep(0.05)
            status = EdgeStatus(edge_id="camA", online=True, ts=time.time(), decided=7)
            await cam.publish(topics.edge_status("camA"), status.to_bytes(), qos=1, retain=True)
            event = Event(
                edge_id="camA", frame_id="f1", seq=1, ts=time.time(), decision=Decision.CLOUD
            )
            await cam.publish(topics.events("camA"), event.to_bytes(), qos=1)
            after = {"id": "1-abc", "label": "person", "score": 0.9}
            body = json.dumps({"type": "new", "before": None, "after": after})
            await cam.publish(topics.objects("camA"), body, qos=1)
            await cam.publish(topics.snapshot("camA", "person"), jpeg, qos=1, retain=True)
            await cam.publish(topics.count("camA", "person"), b"1", qos=1, retain=True)
            offload = topics.control("camA", "offload", "state")
            await cam.publish(offload, b"ON", qos=1, retain=True)

            def complete(state: dict[str, Any]) -> bool:
                edge = state["edges"].get("camA", {})
                kinds = {item["kind"] for item in state["feed"]}
                return bool(
                    edge.get("decided") == 7 and edge.get("snapshots") and edge.get("counts")
                    and edge.get("controls") and kinds == {"decision", "object"}
                )  # fmt: skip

            state = await _state_until(urls[0], complete)
            async with httpx.AsyncClient() as http:
                picture = (await http.get(urls[0] + "snapshot/camA/person")).content
                sent = await http.post(
                    urls[0] + "api/control/camA/offload",
                    content="OFF",
                    headers={"X-Camoffload": "control"},
                )
            message = await next_message(cam, timeout_s=10)
            assert message.topic.value == topics.control("camA", "offload", "set")
            assert message.payload == b"OFF"
        stop.set()
        await asyncio.wait_for(dashboard, timeout=30)
        return state, picture, sent.status_code

    state, picture, code = asyncio.run(scenario())
    edge = state["edges"]["camA"]
    assert edge["decided"] == 7
    assert edge["counts"] == {"person": 1}
    assert edge["controls"] == {"offload": "ON"}
    assert picture == jpeg
    assert code == 202
    assert state["rejected"] == {}
