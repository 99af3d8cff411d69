"""The edge-site bridge, for real: two Mosquitto processes, the cloud one hardened.

An edge on the site publishes to its local broker; the bridge carries frames up to the
cloud (as the site's identity, over TLS) and results down. The cloud broker is stopped
(by pid) and restarted on the same port while the edge keeps publishing: the frames it
sent meanwhile wait on the site and cross once the link is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker import (
    BridgeSettings,
    BrokerInfo,
    BrokerProcess,
    HardenedFiles,
    Provisioned,
    bridge_broker,
    bridge_config,
    free_port,
    hardened_broker,
    identities_from,
    init_broker_folder,
)
from pipeline.config import BrokerConfig, load_config
from pipeline.errors import BrokerError
from pipeline.mqtt import make_client
from pipeline.topics import Topics, request_properties
from tests._cli import run_cli_until_probed
from tests._helpers import next_message

OUTAGE_FRAMES = 10


@dataclass
class Sites:
    provisioned: Provisioned
    cloud_port: int
    cloud_data: Path
    cloud: BrokerProcess
    site_broker: BrokerProcess

    @property
    def site(self) -> BrokerInfo:
        return self.site_broker.info

    @property
    def topics(self) -> Topics:
        return Topics(self.provisioned.prefix)

    def restart_cloud(self) -> None:
        self.cloud = hardened_broker(
            self.provisioned.files.folder, port=self.cloud_port, data_dir=self.cloud_data
        )
        self.cloud.start()


def _settings(provisioned: Provisioned, **changes: object) -> BridgeSettings:
    lobby = load_config(provisioned.client("lobby").config_file, env={})
    return BridgeSettings(
        cloud=lobby.broker,
        prefix=provisioned.prefix,
        devices=("camA",),
        restart_timeout_s=(1, 1),  # tests wait for the reconnect: keep it short
        **changes,  # type: ignore[arg-type]
    )


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[Sites]:
    port = free_port()
    provisioned = init_broker_folder(
        tmp_path / "cloud",
        identities_from(devices=["camA", "camB"], workers=["worker1"], sites=[("lobby", ["camA"])]),
        prefix=f"test-{uuid.uuid4().hex[:8]}",
        port=port,
    )
    cloud_data = tmp_path / "cloud-data"
    cloud = hardened_broker(provisioned.files.folder, port=port, data_dir=cloud_data)
    site = bridge_broker(_settings(provisioned), data_dir=tmp_path / "site-data")
    holder = Sites(provisioned, port, cloud_data, cloud, site)
    try:
        cloud.start()
        site.start()
        yield holder
    finally:
        site.stop()
        holder.cloud.stop()  # the one running now, after a restart


@contextlib.asynccontextmanager
async def cloud_worker(sites: Sites) -> AsyncIterator[aiomqtt.Client]:
    """worker1 on the cloud with a persistent session (it outlives a broker restart)."""
    broker = load_config(sites.provisioned.client("worker1").config_file, env={}).broker
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 600
    client = aiomqtt.Client(
        broker.host,
        broker.port,
        identifier="worker1",
        username=broker.user,
        password=broker.read_password(),
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_params=aiomqtt.TLSParameters(ca_certs=broker.ca_file),
        clean_start=False,
        properties=props,
        timeout=10,
    )
    async with client:
        yield client


def _edge(sites: Sites) -> aiomqtt.Client:
    return make_client(BrokerConfig(url=sites.site.url), client_id="camA")


def _payload(message: aiomqtt.Message) -> bytes:
    assert isinstance(message.payload, bytes)
    return message.payload


def _prop(message: aiomqtt.Message, name: str) -> object:
    """An MQTT 5 property of a received message (paho's Properties is untyped)."""
    return getattr(message.properties, name, None)


async def _answer(worker: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """What a worker does: reply on the response topic, echoing the correlation data."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.CorrelationData = _prop(message, "CorrelationData")
    topic = _prop(message, "ResponseTopic")
    assert isinstance(topic, str)
    await worker.publish(topic, b"answer:" + _payload(message), qos=1, properties=props)


async def _send(edge: aiomqtt.Client, t: Topics, frame_id: str) -> None:
    await edge.publish(
        t.frames("camA"),
        frame_id.encode(),
        qos=1,
        properties=request_properties(t.results("camA"), frame_id.encode()),
    )


def test_frames_cross_the_bridge_and_survive_a_cloud_outage(sites: Sites) -> None:
    t = sites.topics

    async def scenario() -> tuple[list[bytes], list[tuple[bytes, object]], list[bytes]]:
        async with _edge(sites) as edge:
            await edge.subscribe(t.results("camA"), qos=1)
            async with cloud_worker(sites) as worker:
                await worker.subscribe(t.frames_filter, qos=1)
                # The bridge carries only its own devices: camB's frame stays on the site.
                await edge.publish(t.frames("camB"), b"not-this-site", qos=1)
                await _send(edge, t, "f0")
                first = await next_message(worker)
                props = (_prop(first, "ResponseTopic"), _prop(first, "CorrelationData"))
                await _answer(worker, first)
                reply = await next_message(edge)
                replies = [(_payload(reply), _prop(reply, "CorrelationData"))]

            # The WAN goes down: the cloud broker stops (by pid), the edge keeps sending.
            await asyncio.to_thread(sites.cloud.stop)
            for i in range(1, OUTAGE_FRAMES + 1):
                await _send(edge, t, f"f{i}")  # acknowledged by the site broker
            await asyncio.to_thread(sites.restart_cloud)

            crossed = [_payload(first)]
            async with cloud_worker(sites) as worker:  # same session, no new subscribe
                while len(crossed) < OUTAGE_FRAMES + 1:
                    message = await next_message(worker, timeout_s=20)
                    crossed.append(_payload(message))
                    await _answer(worker, message)
                while len(replies) < OUTAGE_FRAMES + 1:
                    reply = await next_message(edge, timeout_s=20)
                    replies.append((_payload(reply), _prop(reply, "CorrelationData")))
        assert props == (t.results("camA"), b"f0")  # MQTT 5 properties cross the bridge
        return crossed, replies, [b"f%d" % i for i in range(OUTAGE_FRAMES + 1)]

    crossed, replies, expected = asyncio.run(scenario())
    assert crossed == expected  # all of them, in order, camB's not among them
    assert replies == [(b"answer:" + f, f) for f in expected]


def test_bridge_config_carries_only_the_sites_devices(tmp_path: Path) -> None:
    provisioned = init_broker_folder(
        tmp_path / "b",
        identities_from(devices=["camA", "camB"], sites=[("lobby", ["camA"])]),
        prefix="p",
        port=8883,
    )
    settings = _settings(provisioned)
    password = provisioned.client("lobby").password_file.read_text().strip()
    lines = bridge_config(settings, 1883, password=password, data_dir=tmp_path / "d").splitlines()
    assert [line for line in lines if line.startswith("topic ")] == [
        "topic p/frames/camA out 1",
        "topic p/status/edges/camA out 1",
        "topic p/events/camA out 1",
        "topic p/results/camA in 0",
        "topic p/status/workers/+ in 0",
    ]
    assert "listener 1883 127.0.0.1" in lines
    assert "cleansession false" in lines
    assert "persistence true" in lines
    assert "bridge_insecure false" in lines
    assert "remote_username lobby" in lines
    local = bridge_config(
        settings,
        8883,
        password=password,
        data_dir=None,
        local=HardenedFiles(provisioned.files.folder),
        bind="0.0.0.0",
    ).splitlines()
    assert "listener 8883 0.0.0.0" in local
    assert "allow_anonymous false" in local
    assert "use_username_as_clientid true" in local
    with pytest.raises(BrokerError, match="anonymous site listener"):
        bridge_config(settings, 1883, password=password, data_dir=None, bind="0.0.0.0")
    with pytest.raises(BrokerError, match="without spaces"):
        bridge_config(settings, 1883, password="a b\nlistener 1 0.0.0.0", data_dir=None)


def test_cli_runs_the_bridge_from_the_sites_client_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port, site_port = free_port(), free_port()
    provisioned = init_broker_folder(
        tmp_path / "cloud",
        identities_from(devices=["camA"], workers=["worker1"], sites=[("lobby", ["camA"])]),
        prefix=f"test-{uuid.uuid4().hex[:8]}",
        port=port,
    )
    t = Topics(provisioned.prefix)
    site_dir = provisioned.client("lobby").folder
    worker = load_config(provisioned.client("worker1").config_file, env={}).broker

    def probe() -> None:
        async def scenario() -> bytes:
            async with make_client(worker, client_id="worker1") as w:
                await w.subscribe(t.frames_filter, qos=1)
                edge_broker = BrokerConfig(url=f"mqtt://127.0.0.1:{site_port}")
                async with make_client(edge_broker, client_id="camA") as edge:
                    await edge.publish(t.frames("camA"), b"via-cli-bridge", qos=1)
                return _payload(await next_message(w))

        assert asyncio.run(scenario()) == b"via-cli-bridge"

    argv = ["broker", "--config", "bridge", "--dir", str(site_dir), "--port", str(site_port)]
    with hardened_broker(provisioned.files.folder, port=port):
        assert run_cli_until_probed(argv, site_port, probe) == 0
    assert f"listening on mqtt://127.0.0.1:{site_port}" in capsys.readouterr().out
    assert (site_dir / "site-data" / "mosquitto.db").is_file()
