"""The edge-site bridge: a Mosquitto on the site that carries its devices' traffic to
the cloud broker and queues it while the WAN is down.

::

    cameras/edges ──▶ site Mosquitto ══ bridge (TLS, the site's identity) ══▶ cloud broker
       (LAN/loopback)   frames, status, events  out ─▶     ◀─ in  results, worker status

The bridge logs in to the cloud as a *site* identity (see :mod:`broker.acl`), with a
persistent session (``cleansession false``) and QoS 1 for what goes up (QoS 0 for what
comes down, see :attr:`BridgeSettings.down_qos`); the site broker persists what it
queues, so frames published during an outage (or across a site-broker restart) cross
once the link is back. Edges on the site need no change but ``broker.url``: the topics
and the MQTT 5 request/response scheme (properties included) are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from broker.credentials import validate_identity, write_private
from broker.hardened import (
    HardenedFiles,
    common_tail_lines,
    conf_path,
    persistence_lines,
    run_as_user,
    tls_listener_lines,
)
from broker.mosquitto import find_mosquitto
from broker.process import HOST, BrokerProcess
from pipeline.config import BrokerConfig
from pipeline.errors import BrokerError
from pipeline.topics import Topics

__all__ = ["BridgeSettings", "bridge_broker", "bridge_config"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeSettings:
    """What the site broker needs to reach the cloud and which devices it carries."""

    cloud: BrokerConfig  # url (mqtts:// for TLS), username, password source, CA, client cert
    prefix: str
    devices: tuple[str, ...]
    name: str = "cloud"  # the Mosquitto connection name
    restart_timeout_s: tuple[int, int] = (2, 30)  # reconnect backoff: base, cap
    keepalive_s: int = 30  # how soon a dead WAN is noticed
    max_queued_messages: int = 100_000  # the outage queue, per the bridge
    max_queued_bytes: int = 256 * 1024 * 1024
    # QoS of what comes down (results, worker status). 0 on purpose: Mosquitto 2.0 sets
    # no TCP_NODELAY on a bridge's own socket, so the PUBACKs a QoS 1 subscription
    # makes the site send meet the cloud's delayed ACKs, and Nagle holds the next frame
    # ~40 ms (bench/broker_rtt.py round trips, 1 kB: 44 ms p50 with 1, 0.8 with 0). A
    # result lost with a dropped link only means a local decision at the deadline.
    down_qos: int = 0

    def __post_init__(self) -> None:
        Topics(self.prefix)
        if not self.devices:
            raise BrokerError("a bridge carries at least one device")
        for device in self.devices:
            validate_identity(device)
        if self.cloud.user is None:
            raise BrokerError("the bridge needs the site's username (broker.username)")
        if self.down_qos not in (0, 1):
            raise BrokerError("down_qos must be 0 or 1")
        base, cap = self.restart_timeout_s
        if not 1 <= base <= cap:
            raise BrokerError("restart_timeout_s must be (base, cap) with 1 <= base <= cap")


def _topic_lines(settings: BridgeSettings) -> list[str]:
    topics = Topics(settings.prefix)
    lines = []
    for device in settings.devices:
        lines += [
            f"topic {topics.frames(device)} out 1",
            f"topic {topics.edge_status(device)} out 1",
            f"topic {topics.events(device)} out 1",
            f"topic {topics.results(device)} in {settings.down_qos}",
        ]
    lines.append(f"topic {topics.worker_status_filter} in {settings.down_qos}")
    return lines


def bridge_config(
    settings: BridgeSettings,
    port: int,
    *,
    password: str,
    data_dir: Path | None,
    local: HardenedFiles | None = None,
    bind: str = HOST,
) -> str:
    """The site broker's ``mosquitto.conf``: it holds the site's password in plain text
    (Mosquitto has no other way), so write it ``0600`` (:func:`bridge_broker` does).

    The local listener is anonymous on 127.0.0.1 (edges on the same box) unless
    ``local`` names a provisioned folder: then it is TLS with the same passwords and
    ACLs as the cloud, for cameras elsewhere on the site's LAN.
    """
    cloud = settings.cloud
    if not password or any(c.isspace() or not c.isprintable() for c in password):
        raise BrokerError("the site's password must be non-empty printable text without spaces")
    if local is None:
        if bind != HOST:
            raise BrokerError("an anonymous site listener binds 127.0.0.1 only: give `local`")
        listener = [
            "per_listener_settings false",
            "allow_anonymous true",
            f"listener {port} {HOST}",
        ]
    else:
        listener = tls_listener_lines(local, port, bind=bind)
    base, cap = settings.restart_timeout_s
    lines = [
        "# camoffload edge-site bridge: queues while the WAN is down",
        f"user {run_as_user()}",
        *listener,
        *persistence_lines(data_dir),
        # The bridge's outage queue is the site broker's queue for it.
        *common_tail_lines(max_queued_messages=settings.max_queued_messages),
        f"max_queued_bytes {settings.max_queued_bytes}",
        "",
        f"connection {settings.name}",
        f"address {cloud.host}:{cloud.port}",
        "bridge_protocol_version mqttv50",
        f"remote_clientid {cloud.user}",
        f"remote_username {cloud.user}",
        f"remote_password {password}",
        "cleansession false",
        "start_type automatic",
        f"restart_timeout {base} {cap}",
        f"keepalive_interval {settings.keepalive_s}",
        # Mosquitto's own notification topic is outside the site's ACL on the cloud.
        "notifications false",
        f"bridge_max_packet_size {16 * 1024 * 1024}",
    ]
    if cloud.tls:
        if cloud.ca_file is None:
            raise BrokerError("a TLS bridge needs broker.ca_file (the cloud's CA)")
        lines += [f"bridge_cafile {conf_path(Path(cloud.ca_file))}", "bridge_insecure false"]
        if cloud.cert_file is not None and cloud.key_file is not None:
            lines += [
                f"bridge_certfile {conf_path(Path(cloud.cert_file))}",
                f"bridge_keyfile {conf_path(Path(cloud.key_file))}",
            ]
    lines += _topic_lines(settings)
    return "\n".join(lines) + "\n"


def bridge_broker(
    settings: BridgeSettings,
    *,
    port: int = 0,
    data_dir: Path | None = None,
    local: HardenedFiles | None = None,
    bind: str = HOST,
    binary: str | None = None,
) -> BrokerProcess:
    """A :class:`BrokerProcess` for the site broker. ``data_dir`` keeps the outage queue
    across a site-broker restart (without it, only in memory)."""
    exe = binary or find_mosquitto()
    if exe is None:
        raise BrokerError("mosquitto not found on PATH or in /usr/sbin: the bridge needs it")
    password = settings.cloud.read_password()
    if password is None:
        raise BrokerError(
            "the bridge needs the site's password: broker.password_file or "
            "CAMOFFLOAD_BROKER_PASSWORD"
        )
    if local is not None:
        local.check()
    if data_dir is not None:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def argv_for(port: int, workdir: Path) -> list[str]:
        conf = workdir / "mosquitto.conf"
        text = bridge_config(
            settings, port, password=password, data_dir=data_dir, local=local, bind=bind
        )
        write_private(conf, text)
        return [exe, "-c", str(conf)]

    return BrokerProcess(
        kind="mosquitto-bridge",
        argv_for=argv_for,
        port=port,
        protocol="5",
        shared_subscriptions=True,
        tls=local is not None,
        keep_freed_memory=True,
    )
