"""Home Assistant discovery for a detecting edge: every config carries the fields Home
Assistant requires for its component; labels added and dropped at run time appear and
disappear through the broker."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest

from camoffload.demo import default_video
from edge_node import EdgeNode, Ledger, VideoSource
from edge_node.homeassistant import discovery_messages
from edge_node.homeassistant_objects import POLICIES, object_discovery, object_removal
from pipeline.config import Config
from pipeline.topics import Topics, ha_node_id
from tests._helpers import client, detecting

pytestmark = pytest.mark.timeout(240)

# What Home Assistant's MQTT integration requires of each component's config (its
# schemas' vol.Required keys), and what every entity here needs to be one of the
# edge's device.
REQUIRED = {
    "binary_sensor": {"state_topic"},
    "sensor": {"state_topic"},
    "camera": {"topic"},
    "switch": {"command_topic"},
    "select": {"command_topic", "options"},
}
COMMON = {"unique_id", "name", "device", "availability_topic", "availability_template"}


def test_every_object_entity_has_what_home_assistant_requires() -> None:
    messages = object_discovery("site/cams", "door", {"person", "car"}, version="1.0")
    topics = Topics("site/cams")
    components = {}
    for topic, payload in messages:
        prefix, component, node, object_id, last = topic.split("/")
        assert (prefix, node, last) == ("homeassistant", ha_node_id("door"), "config")
        config = json.loads(payload)
        assert REQUIRED[component] | COMMON <= set(config), (component, config)
        assert config["device"]["identifiers"] == [ha_node_id("door")]
        assert config["unique_id"] == f"{ha_node_id('door')}_{object_id}"
        components[object_id] = (component, config)
    assert components["person_occupancy"][1]["state_topic"] == topics.count("door", "person")
    assert components["person_occupancy"][1]["device_class"] == "occupancy"
    assert components["car"][1]["topic"] == topics.snapshot("door", "car")
    assert components["offload"][1]["command_topic"] == topics.control("door", "offload", "set")
    assert components["policy"][1]["options"] == list(POLICIES)
    # One device for all: the status sensors' device is the same identifier.
    base = json.loads(discovery_messages("site/cams", "door", version="1.0")[0][1])
    assert base["device"]["identifiers"] == [ha_node_id("door")]
    removal = object_removal("door", {"car"})
    assert {t for t, _ in removal} == {
        t for t, _ in messages if "/person" not in t
    }  # the car's three entities, the switch and the select
    assert all(payload == b"" for _, payload in removal)


def test_labels_watched_at_run_time_appear_and_disappear_in_home_assistant(
    config: Config,
) -> None:
    cfg = detecting(
        config,
        policy="local-only",
        homeassistant=True,
        homeassistant_prefix=f"ha-{config.prefix}",
        rate="20",
    )
    node_id = ha_node_id(cfg.edge.edge_id)
    dog = f"{cfg.edge.homeassistant_prefix}/camera/{node_id}/dog/config"
    seen: dict[str, list[bytes]] = {}
    arrived = asyncio.Condition()

    async def listen(c: aiomqtt.Client) -> None:
        async for message in c.messages:
            assert isinstance(message.payload, bytes)
            async with arrived:
                seen.setdefault(message.topic.value, []).append(message.payload)
                arrived.notify_all()

    async def until(check: object) -> None:
        async with asyncio.timeout(60), arrived:
            await arrived.wait_for(check)  # type: ignore[arg-type]

    async def scenario() -> None:
        node = EdgeNode(cfg, VideoSource(str(default_video())), Ledger())
        stop = asyncio.Event()
        async with client(cfg) as c:
            await c.subscribe(f"{cfg.edge.homeassistant_prefix}/#", qos=1)
            listener = asyncio.create_task(listen(c))
            running = asyncio.create_task(node.run(stop=stop))
            try:
                ha = cfg.edge.homeassistant_prefix
                person = f"{ha}/binary_sensor/{node_id}/person_occupancy/config"
                await until(lambda: person in seen)
                assert dog not in seen
                set_topic = cfg.topics.control(cfg.edge.edge_id, "detect", "set")
                await c.publish(set_topic, '["person", "dog"]', qos=1)
                await until(lambda: dog in seen and seen[dog][-1] != b"")
                await c.publish(set_topic, "person", qos=1)
                await until(lambda: seen[dog][-1] == b"")  # removed
            finally:
                stop.set()
                await running
                listener.cancel()

    asyncio.run(scenario())


def test_each_zone_gets_occupancy_and_count_per_label_and_leaves_with_it() -> None:
    messages = object_discovery(
        "site/cams", "door", {"person"}, zones=("porch", "drive way"), version="1.0"
    )
    topics = Topics("site/cams")
    configs = {topic.split("/")[3]: json.loads(payload) for topic, payload in messages}
    porch = configs["porch_person_occupancy"]
    assert porch["state_topic"] == topics.zone_count("door", "porch", "person")
    assert porch["device_class"] == "occupancy"
    assert REQUIRED["binary_sensor"] | COMMON <= set(porch)
    count = configs["drive_way_person_count"]
    assert count["state_topic"] == topics.zone_count("door", "drive way", "person")
    assert count["name"] == "drive way person count"
    # Removing the label removes its zone entities too; nothing is left behind.
    removal = object_removal("door", {"person"}, zones=("porch", "drive way"))
    assert {t for t, _ in removal} == {t for t, _ in messages}
