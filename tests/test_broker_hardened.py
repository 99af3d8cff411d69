"""The hardened Mosquitto, for real: TLS only, a password per identity, per-device ACLs.

Every refusal is observed, not assumed. Mosquitto 2.0's ``acl_file`` answers a SUBSCRIBE
outside a client's rights with a granted SUBACK and then never delivers a message on
it, and silently drops a PUBLISH outside them; so each test also sends the same kind of
message where it *is* allowed and checks that it arrives (the test can fail), and
that the forbidden one never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import shutil
import socket
import ssl
import stat
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import cv2
import numpy as np
import paho.mqtt.client as paho
import pytest
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion

from broker import (
    BrokerInfo,
    Provisioned,
    acl_text,
    free_port,
    hardened_broker,
    hardened_config,
    hash_password,
    identities_from,
    init_broker_folder,
    load_key_pair,
    verify_password,
)
from broker.acl import MAX_POOL_PROCESSES
from broker.hardened import HARDENED_MAX_PACKET_BYTES, HardenedFiles
from camoffload.cli import main as cli_main
from edge_node import EdgeNode, ImageFolderSource, Ledger
from pipeline.config import BrokerConfig, Config, load_config
from pipeline.errors import BrokerError, ConfigError
from pipeline.inference import Classifier
from pipeline.mqtt import make_client
from pipeline.protocol import Decision, Event, Result, WorkerStatus, decode_reply
from pipeline.topics import Topics, request_properties
from tests._cli import run_cli_until_probed
from tests._helpers import jpeg_request, next_message, running_worker

NOT_AUTHORIZED = 0x87
BAD_CREDENTIALS = 0x86
DEVICES = ("camA", "camB")
WORKERS = ("worker1", "worker2", "worker3")


@dataclass(frozen=True)
class Hardened:
    provisioned: Provisioned
    info: BrokerInfo

    @property
    def topics(self) -> Topics:
        return Topics(self.provisioned.prefix)

    def config(self, name: str, *overrides: str) -> Config:
        """The client settings ``broker init`` wrote for ``name``, as a client loads them."""
        path = self.provisioned.client(name).config_file
        return load_config(path, env={}, overrides=list(overrides))


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hardened]:
    folder = tmp_path_factory.mktemp("hardened") / "broker"
    port = free_port()  # known before init, so the generated client settings just work
    provisioned = init_broker_folder(
        folder,
        identities_from(devices=DEVICES, workers=WORKERS, dashboards=["dash1"]),
        prefix=f"test-{uuid.uuid4().hex[:8]}",
        port=port,
    )
    with hardened_broker(folder, port=port) as info:
        yield Hardened(provisioned, info)


@contextlib.asynccontextmanager
async def connect(
    h: Hardened, name: str, *, client_id: str | None = None
) -> AsyncIterator[aiomqtt.Client]:
    async with make_client(h.config(name).broker, client_id=client_id or name) as c:
        yield c


async def until(c: aiomqtt.Client, marker: bytes, *, grace_s: float = 0.3) -> list[aiomqtt.Message]:
    """Every message up to the first with payload ``marker``, and any within ``grace_s``
    after it. The marker is sent after the forbidden messages by the same or a later
    publisher, so anything delivered for them has arrived by then."""
    got: list[aiomqtt.Message] = []
    while not got or got[-1].payload != marker:
        got.append(await next_message(c, timeout_s=10))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(grace_s):
            async for message in c.messages:
                got.append(message)
    return got


async def _drain(c: aiomqtt.Client, seconds: float) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            async for message in c.messages:
                got.append(message)
    return got


def _code(reason: object) -> int:
    """A reason code as an int (paho gives a ReasonCode for MQTT 5, an int otherwise)."""
    value = getattr(reason, "value", reason)
    assert isinstance(value, int)
    return value


async def _suback(c: aiomqtt.Client, topic: str) -> int:
    codes = await c.subscribe(topic, qos=1)
    assert isinstance(codes, list)
    return _code(codes[0])


# --- provisioning: files, permissions, hashes, certificates --------------------------


def test_init_writes_private_files_that_clients_can_use(tmp_path: Path) -> None:
    out = tmp_path / "b"
    done = init_broker_folder(
        out,
        identities_from(devices=["cam1"], workers=["w1"], sites=[("lobby", ["cam1"])]),
        hostnames=["broker.example", "10.0.0.5"],
        port=8883,
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for secret in (out / "ca.key", out / "server.key", out / "passwd", out / "acl"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    hashes = dict(line.split(":", 1) for line in (out / "passwd").read_text().splitlines())
    assert set(hashes) == {"cam1", "w1", "lobby"}
    for name, hashed in hashes.items():
        client = done.client(name)
        assert stat.S_IMODE(client.folder.stat().st_mode) == 0o700
        assert stat.S_IMODE(client.password_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(client.key_file.stat().st_mode) == 0o600
        password = client.password_file.read_text().strip()
        assert hashed.startswith("$7$")
        assert verify_password(password, hashed)
        assert not verify_password(password + "x", hashed)
        assert password not in (out / "passwd").read_text()
        leaf = load_key_pair(client.cert_file, client.key_file)
        assert leaf.common_name == name

    ca = load_key_pair(out / "ca.crt", out / "ca.key")
    server = x509.load_pem_x509_certificate((out / "server.crt").read_bytes())
    server.verify_directly_issued_by(ca.cert)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1",
        "10.0.0.5",
    }
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "broker.example"}

    config = load_config(done.client("cam1").config_file, env={})
    assert config.broker.url == "mqtts://broker.example:8883"
    assert config.broker.user == "cam1"
    assert config.broker.read_password() == done.client("cam1").password_file.read_text().strip()
    assert config.edge.edge_id == "cam1"
    assert load_config(done.client("w1").config_file, env={}).worker.worker_id == "w1"
    assert '"devices": ["cam1"]' in done.client("lobby").bridge_file.read_text()

    with pytest.raises(BrokerError, match="not an empty folder"):
        init_broker_folder(out, identities_from(devices=["cam9"]))


def test_password_hash_is_mosquittos(tmp_path: Path) -> None:
    """Our $7$ hashes read back with Mosquitto's own tool's output, and the other way
    round every connection below is Mosquitto checking a hash we wrote."""
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed")
    pw_file = tmp_path / "pw"
    throwaway = "test-only-password"  # on argv here, so nothing that is ever used
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(pw_file), "someone", throwaway],
        check=True,
        capture_output=True,
    )
    theirs = pw_file.read_text().strip().split(":", 1)[1]
    assert verify_password(throwaway, theirs)
    assert not verify_password("wrong", theirs)
    ours = hash_password(throwaway, iterations=101, salt=b"0123456789ab")
    assert ours.split("$")[1:3] == ["7", "101"]
    assert verify_password(throwaway, ours)


def test_acl_and_config_text_follow_the_roles(tmp_path: Path) -> None:
    topics = Topics("p")
    text = acl_text(identities_from(devices=["c1"], workers=["w1"], dashboards=["d1"]), topics)
    blocks = {b.splitlines()[1]: b.splitlines()[2:] for b in text.split("\n\n")[1:]}
    assert blocks["user c1"] == [
        "topic write p/frames/c1",
        "topic write p/status/edges/c1",
        "topic write p/events/c1",
        "topic write p/objects/c1",
        "topic write p/snapshots/c1/+",
        "topic write p/counts/c1/+",
        "topic write p/zones/c1/+/+",
        "topic write p/control/c1/+/state",
        "topic write p/ha/c1/state",
        "topic write homeassistant/+/camoffload_c1/+/config",
        "topic read p/results/c1",
        "topic read p/control/c1/+/set",
        "topic read p/status/workers/+",
    ]
    assert blocks["user w1"] == [
        "topic read p/frames/+",
        "topic write p/results/+",
        "topic write p/status/workers/w1",
        *(f"topic write p/status/workers/w1-{i}" for i in range(1, MAX_POOL_PROCESSES + 1)),
    ]
    assert blocks["user d1"] == [
        "topic read p/status/#",
        "topic read p/events/+",
        "topic read p/objects/+",
        "topic read p/snapshots/#",
        "topic read p/counts/#",
        "topic read p/zones/#",
        "topic read p/control/#",
        "topic write p/control/+/+/set",
        "topic read p/ha/+/state",
        "topic read homeassistant/#",
    ]
    with pytest.raises(BrokerError, match="unique"):
        identities_from(devices=["x"], workers=["x"])
    with pytest.raises(BrokerError, match="unknown device"):
        identities_from(devices=["x"], sites=[("s", ["y"])])
    with pytest.raises(BrokerError, match="must be 1-64"):
        identities_from(devices=["a/b"])

    (tmp_path / "b").mkdir()
    conf = hardened_config(HardenedFiles(tmp_path / "b"), 8883)
    lines = conf.splitlines()
    assert "allow_anonymous false" in lines
    assert "use_username_as_clientid true" in lines
    assert [line for line in lines if line.startswith("listener")] == ["listener 8883 127.0.0.1"]
    assert "set_tcp_nodelay true" in lines
    assert "max_queued_messages 10000" in lines
    assert "tls_version tlsv1.2" in lines


def test_tls_files_require_an_mqtts_url() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={}, overrides=["broker.url=mqtt://h:8883", "broker.ca_file=/ca.crt"])
    assert info.value.key == "broker.url"
    ok = load_config(env={}, overrides=["broker.url=mqtts://h", "broker.ca_file=/ca.crt"])
    assert ok.broker.tls


# --- the broker refuses what it must --------------------------------------------------


def test_a_device_reads_only_its_own_results(hardened: Hardened) -> None:
    t = hardened.topics
    forbidden = [t.results("camB"), t.frames("camB"), t.frames_filter, f"{t.prefix}/results/+", "#"]

    async def scenario() -> None:
        async with (
            connect(hardened, "camA") as a,
            connect(hardened, "camB") as b,
            connect(hardened, "worker1") as w,
        ):
            codes = {topic: await _suback(a, topic) for topic in forbidden}
            assert await _suback(a, t.results("camA")) == 1
            await b.subscribe(t.results("camB"), qos=1)
            await w.subscribe(t.frames_filter, qos=1)

            await w.publish(t.results("camB"), b"secret-result", qos=1)
            await b.publish(t.frames("camB"), b"secret-frame", qos=1)
            # Both reached their rightful readers: the topics are right.
            assert (await next_message(b)).payload == b"secret-result"
            assert (await next_message(w)).payload == b"secret-frame"

            await w.publish(t.results("camA"), b"marker", qos=1)
            got = await until(a, b"marker")
        # Mosquitto's acl_file grants the SUBACK (0x87 from a broker that checks at
        # subscribe time would do as well) but delivers nothing outside the ACL.
        assert all(code in (1, NOT_AUTHORIZED) for code in codes.values()), codes
        assert {m.topic.value for m in got} == {t.results("camA")}
        assert {m.payload for m in got} == {b"marker"}

    asyncio.run(scenario())


def test_a_device_cannot_publish_as_another_or_as_a_worker(hardened: Hardened) -> None:
    t = hardened.topics
    forged = [
        (t.frames("camB"), False),
        (t.edge_status("camB"), True),
        (t.events("camB"), False),
        (t.results("camB"), False),
        (t.worker_status("worker1"), True),
    ]

    async def scenario() -> None:
        async with (
            connect(hardened, "camB") as b,
            connect(hardened, "worker1") as w,
            connect(hardened, "dash1") as d,
        ):
            await w.subscribe(t.frames_filter, qos=1)
            await b.subscribe(t.results("camB"), qos=1)
            await d.subscribe(f"{t.prefix}/status/#", qos=1)
            await d.subscribe(f"{t.prefix}/events/+", qos=1)
            # camA even claims camB's client id: the broker uses the username instead,
            # so camB's session is not taken over (it still gets its result below).
            async with connect(hardened, "camA", client_id="camB") as a:
                for topic, retain in forged:
                    await a.publish(topic, b"forged", qos=1, retain=retain)
                await a.publish(t.frames("camA"), b"legit-frame", qos=1)
                await a.publish(t.events("camA"), b"legit-event", qos=1)
            await w.publish(t.results("camB"), b"legit-result", qos=1)
            seen = {
                "worker": await until(w, b"legit-frame"),
                "dashboard": await until(d, b"legit-event"),
                "camB": await until(b, b"legit-result"),
            }
        # Nothing forged was retained either: a new subscription finds none of it.
        async with connect(hardened, "dash1") as late:
            await late.subscribe(t.edge_status("camB"), qos=1)
            await late.subscribe(t.worker_status("worker1"), qos=1)
            seen["retained"] = await _drain(late, 0.5)
        for who, messages in seen.items():
            assert b"forged" not in {m.payload for m in messages}, who
        assert [m.topic.value for m in seen["worker"]] == [t.frames("camA")]
        assert [m.topic.value for m in seen["camB"]] == [t.results("camB")]

    asyncio.run(scenario())


def _puback_codes(broker: BrokerConfig, topics: list[str]) -> list[int]:
    """PUBACK reason codes for one QoS 1 publish per topic (aiomqtt does not show them)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="pubacks", protocol=paho.MQTTv5)
    client.tls_set(ca_certs=broker.ca_file)
    client.username_pw_set(broker.user, broker.read_password())
    codes: dict[int, int] = {}
    done = threading.Event()

    def on_publish(*args: object) -> None:
        mid, reason = args[2], args[3]
        assert isinstance(mid, int)
        codes[mid] = _code(reason)
        if len(codes) == len(topics):
            done.set()

    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        mids = [client.publish(topic, b"probe", qos=1).mid for topic in topics]
        assert done.wait(10), codes
    finally:
        client.disconnect()
        client.loop_stop()
    return [codes[mid] for mid in mids]


def test_a_forbidden_publish_is_answered_not_authorized(hardened: Hardened) -> None:
    t = hardened.topics
    forbidden = [t.frames("camB"), t.results("camA"), t.worker_status("worker1"), "other/x"]
    codes = _puback_codes(hardened.config("camA").broker, [*forbidden, t.events("camA")])
    assert codes[:-1] == [NOT_AUTHORIZED] * len(forbidden)
    assert codes[-1] in (0x00, 0x10)  # success / no matching subscribers


def test_a_last_will_on_another_devices_topic_is_dropped(hardened: Hardened) -> None:
    t = hardened.topics

    async def scenario() -> list[aiomqtt.Message]:
        async with connect(hardened, "dash1") as d:
            await d.subscribe(f"{t.prefix}/status/edges/+", qos=1)
            broker = hardened.config("camA").broker
            await asyncio.to_thread(_vanish_with_will, broker, t.edge_status("camB"), b"forged")
            await asyncio.to_thread(_vanish_with_will, broker, t.edge_status("camA"), b"will")
            return await until(d, b"will")

    got = asyncio.run(scenario())
    assert [(m.topic.value, m.payload) for m in got] == [(t.edge_status("camA"), b"will")]


def _vanish_with_will(broker: BrokerConfig, topic: str, payload: bytes) -> None:
    """Connect with a will, then drop the TCP connection without DISCONNECT."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="vanishing", protocol=paho.MQTTv5)
    client.tls_set(ca_certs=broker.ca_file)
    client.username_pw_set(broker.user, broker.read_password())
    client.will_set(topic, payload, qos=1, retain=False)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect(broker.host, broker.port)
    deadline = time.monotonic() + 5
    while not connected.is_set() and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    assert connected.is_set()
    sock = client.socket()
    assert isinstance(sock, socket.socket)  # an ssl.SSLSocket
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def test_a_dashboard_reads_status_and_events_only(hardened: Hardened) -> None:
    t = hardened.topics

    async def scenario() -> list[aiomqtt.Message]:
        async with connect(hardened, "dash1") as d, connect(hardened, "camA") as a:
            for topic in (t.frames_filter, f"{t.prefix}/results/+"):
                assert await _suback(d, topic) in (1, NOT_AUTHORIZED)
            await d.subscribe(t.events("camA"), qos=1)
            await a.publish(t.frames("camA"), b"private-frame", qos=1)
            async with connect(hardened, "worker1") as w:
                await w.publish(t.results("camA"), b"private-result", qos=1)
            await d.publish(t.events("camA"), b"forged-by-dashboard", qos=1)
            await a.publish(t.events("camA"), b"event", qos=1)
            return await until(d, b"event")

    got = asyncio.run(scenario())
    assert [(m.topic.value, m.payload) for m in got] == [(t.events("camA"), b"event")]


def test_only_dashboards_switch_edges_and_devices_publish_only_their_own_objects(
    hardened: Hardened,
) -> None:
    """A dashboard (or Home Assistant) may set a device's controls; the device reads its
    own set topic and echoes its state; another device can neither set nor forge."""
    t = hardened.topics
    offload_set = t.control("camA", "offload", "set")

    async def scenario() -> dict[str, list[aiomqtt.Message]]:
        async with (
            connect(hardened, "camA") as a,
            connect(hardened, "camB") as b,
            connect(hardened, "dash1") as d,
        ):
            await a.subscribe(t.control_set_filter("camA"), qos=1)
            assert await _suback(b, t.control_set_filter("camA")) in (1, NOT_AUTHORIZED)
            for topic in (f"{t.prefix}/objects/+", f"{t.prefix}/counts/#", f"{t.prefix}/control/#"):
                await d.subscribe(topic, qos=1)
            await b.publish(offload_set, b"forged-set", qos=1)  # a device may not switch
            await b.publish(t.objects("camA"), b"forged-object", qos=1)
            await b.publish(t.count("camA", "person"), b"forged-count", qos=1)
            await d.publish(offload_set, b"OFF", qos=1)
            seen = {"camA": await until(a, b"OFF")}
            await a.publish(t.control("camA", "offload", "state"), b"state-OFF", qos=1)
            await a.publish(t.objects("camA"), b"object", qos=1)
            await a.publish(t.count("camA", "person"), b"count", qos=1)
            seen["dashboard"] = await until(d, b"count")
            return seen

    seen = asyncio.run(scenario())
    assert [(m.topic.value, m.payload) for m in seen["camA"]] == [(offload_set, b"OFF")]
    got = {(m.topic.value, m.payload) for m in seen["dashboard"]}
    assert {p for _, p in got}.isdisjoint({b"forged-set", b"forged-object", b"forged-count"})
    assert (t.objects("camA"), b"object") in got
    assert (t.control("camA", "offload", "state"), b"state-OFF") in got


@pytest.mark.parametrize(
    "change",
    ["wrong password", "unknown user", "no credentials"],
)
def test_bad_credentials_are_refused_at_connect(
    hardened: Hardened, tmp_path: Path, change: str
) -> None:
    good = hardened.config("camA").broker
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    broker = {
        "wrong password": dataclasses.replace(good, password_file=str(wrong)),
        "unknown user": dataclasses.replace(good, username="mallory"),
        "no credentials": dataclasses.replace(good, username=None, password_file=None),
    }[change]

    async def scenario() -> None:
        async with make_client(broker, client_id="intruder"):
            pass

    with pytest.raises(aiomqtt.MqttCodeError) as info:
        asyncio.run(scenario())
    assert _code(info.value.rc) in (NOT_AUTHORIZED, BAD_CREDENTIALS)


_MQTT311_CONNECT = bytes([0x10, 0x0D, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 1]) + b"x"


def _raw_connect(port: int) -> bytes:
    """Send a plain-TCP MQTT CONNECT; what comes back (b"" if the peer hung up)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(_MQTT311_CONNECT)
        try:
            return sock.recv(64)
        except ConnectionResetError:
            return b""


def test_plain_tcp_and_an_untrusted_certificate_are_refused(
    hardened: Hardened, mosquitto: BrokerInfo
) -> None:
    # The same bytes get a CONNACK (0x20) from the dev broker: the probe is sound.
    assert _raw_connect(mosquitto.port)[:1] == b"\x20"
    assert _raw_connect(hardened.info.port) == b""

    good = hardened.config("camA").broker
    untrusted = dataclasses.replace(good, ca_file=None)  # the system CAs do not know ours

    async def scenario() -> None:
        async with make_client(untrusted, client_id="camA"):
            pass

    with pytest.raises(aiomqtt.MqttError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(scenario())
    # paho leaves the socket of a failed TLS handshake to the garbage collector.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _tls_connect(port: int, ca_file: Path, cert: tuple[Path, Path] | None) -> bytes | str:
    """A TLS handshake (with or without a client certificate), then a bare CONNECT: the
    bytes that come back (b"" if the broker hung up), or the TLS/socket error's text."""
    context = ssl.create_default_context(cafile=str(ca_file))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(_MQTT311_CONNECT)
            return tls.recv(64)
    except (ssl.SSLError, ConnectionError) as exc:
        return str(exc)


def test_mutual_tls_wants_a_certificate_from_our_ca(hardened: Hardened) -> None:
    folder = hardened.provisioned.files.folder
    cam = hardened.provisioned.client("camA")
    with hardened_broker(folder, require_client_cert=True) as info:
        # With our client certificate the TLS session carries MQTT: a CONNACK comes back
        # (0x20, refusing this password-less CONNECT with 3.1.1 code 5, not authorised).
        answer = _tls_connect(info.port, cam.ca_file, (cam.cert_file, cam.key_file))
        assert isinstance(answer, bytes)
        assert (answer[:1], answer[-1]) == (b"\x20", 5)
        # Without one, TLS itself fails (an alert, or the broker hangs up): no CONNACK.
        refused = _tls_connect(info.port, cam.ca_file, None)
        assert isinstance(refused, str) or refused == b"", refused

        # and a client with its generated settings (certificate included) just works
        broker = dataclasses.replace(hardened.config("camA").broker, url=info.url)

        async def scenario() -> int:
            async with make_client(broker, client_id="camA") as c:
                return await _suback(c, hardened.topics.results("camA"))

        assert asyncio.run(scenario()) == 1


# --- and the pipeline works through it -----------------------------------------------


@pytest.mark.timeout(300)  # the first to need the real model loads it
def test_edge_and_worker_work_through_the_hardened_broker(
    hardened: Hardened, classifier: Classifier, frames: list[np.ndarray], tmp_path: Path
) -> None:
    t = hardened.topics
    worker = hardened.config("worker2", "worker.status_interval_s=0.2")
    edge = hardened.config("camA", "edge.deadline_ms=30000")
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, image in enumerate(frames[:3]):
        cv2.imwrite(str(folder / f"{i:03d}.png"), image)

    async def scenario() -> tuple[int, int, list[Event], WorkerStatus]:
        async with running_worker(worker, classifier), connect(hardened, "dash1") as d:
            await d.subscribe(t.events("camA"), qos=1)
            await d.subscribe(t.worker_status("worker2"), qos=1)
            summary = await EdgeNode(edge, ImageFolderSource(folder), Ledger()).run()
            events: list[Event] = []
            status: WorkerStatus | None = None
            while len(events) < 3 or status is None:
                message = await next_message(d)
                assert isinstance(message.payload, bytes)
                if message.topic.value == t.events("camA"):
                    events.append(Event.from_bytes(message.payload))
                else:
                    status = WorkerStatus.from_bytes(message.payload)
            return summary.captured, summary.answered, events, status

    captured, answered, events, status = asyncio.run(scenario())
    assert (captured, answered) == (3, 3)
    assert [e.decision for e in events] == [Decision.CLOUD] * 3
    assert status.worker_id == "worker2"


@pytest.mark.timeout(300)  # the first to need the real model loads it
def test_three_workers_share_the_frames_and_none_is_answered_twice(
    hardened: Hardened, classifier: Classifier, frames: list[np.ndarray]
) -> None:
    t = hardened.topics
    n = 60
    small = cv2.resize(frames[0], (64, 48))

    async def scenario() -> tuple[dict[str, int], dict[str, str], list[int]]:
        configs = [hardened.config(w, "worker.status_interval_s=0.5") for w in WORKERS]
        async with contextlib.AsyncExitStack() as stack:
            workers = [
                await stack.enter_async_context(running_worker(c, classifier)) for c in configs
            ]
            a = await stack.enter_async_context(connect(hardened, "camA"))
            await a.subscribe(t.results("camA"), qos=1)
            for i in range(n):
                request = jpeg_request(small, frame_id=f"f{i}", edge_id="camA", deadline_s=120)
                await a.publish(
                    t.frames("camA"),
                    request.to_bytes(),
                    qos=1,
                    properties=request_properties(t.results("camA"), request.frame_id.encode()),
                )
            answers: dict[str, int] = {}
            by: dict[str, str] = {}
            async with asyncio.timeout(90):
                while len(answers) < n:
                    message = await next_message(a, timeout_s=90)
                    assert isinstance(message.payload, bytes)
                    reply = decode_reply(message.payload)
                    assert isinstance(reply, Result), reply
                    answers[reply.frame_id] = answers.get(reply.frame_id, 0) + 1
                    by[reply.frame_id] = reply.worker_id
            with contextlib.suppress(TimeoutError):  # a duplicate would come now
                while True:
                    message = await next_message(a, timeout_s=0.5)
                    assert isinstance(message.payload, bytes)
                    duplicate = decode_reply(message.payload).frame_id or "?"
                    answers[duplicate] = answers.get(duplicate, 0) + 1
            return answers, by, [w.stats.frames_done for w in workers]

    answers, by, done = asyncio.run(scenario())
    assert answers == {f"f{i}": 1 for i in range(n)}
    assert sum(done) == n
    assert len(set(by.values())) > 1, f"only {set(by.values())} answered"


# --- the command line ------------------------------------------------------------------


def test_cli_init_then_run_the_hardened_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "b"
    port = free_port()
    assert (
        cli_main(
            [
                "broker",
                "init",
                "--out",
                str(out),
                "--devices",
                "cam1",
                "--workers",
                "w1",
                "--port",
                str(port),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert str(out / "clients" / "cam1" / "camoffload.toml") in printed
    assert (out / "clients" / "cam1" / "password").read_text().strip() not in printed

    config = load_config(out / "clients" / "cam1" / "camoffload.toml", env={})

    def probe() -> None:
        async def scenario() -> int:
            async with make_client(config.broker, client_id="cam1") as c:
                return await _suback(c, config.topics.results("cam1"))

        assert asyncio.run(scenario()) == 1

    argv = ["broker", "--config", "hardened", "--dir", str(out)]
    assert run_cli_until_probed(argv, port, probe) == 0
    assert f"listening on mqtts://127.0.0.1:{port}" in capsys.readouterr().out
    assert (out / "data" / "mosquitto.db").is_file()  # it persisted on the way out


def test_hardened_broker_needs_a_provisioned_folder(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="broker init"):
        hardened_broker(tmp_path)


def test_a_packet_over_the_hardened_limit_disconnects_its_sender_only(hardened: Hardened) -> None:
    """``max_packet_size`` (16 MiB) bounds what one client can make the broker buffer:
    a bigger PUBLISH ends that client's connection, and nobody else notices."""
    t = hardened.topics

    async def oversize() -> None:
        async with connect(hardened, "camA", client_id="camA-huge") as a:
            async with asyncio.timeout(60):
                await a.publish(t.frames("camA"), bytes(HARDENED_MAX_PACKET_BYTES + 1024), qos=1)

    async def others() -> list[aiomqtt.Message]:
        async with connect(hardened, "worker1") as w, connect(hardened, "camB") as b:
            await w.subscribe(t.frames_filter, qos=1)
            await b.publish(t.frames("camB"), b"still-served", qos=1)
            return await until(w, b"still-served")

    with pytest.raises(aiomqtt.MqttError):
        asyncio.run(oversize())
    got = asyncio.run(others())
    assert [(m.topic.value, m.payload) for m in got] == [(t.frames("camB"), b"still-served")]
