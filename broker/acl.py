"""Per-identity access control for the hardened broker, from roles and the topic scheme.

==========  ===========================================  ==================================
role        may publish (``topic write``)                 may read (subscribe, receive)
==========  ===========================================  ==================================
device      its own ``frames``, ``status/edges``,         its own ``results`` and
            ``events``, ``objects``, ``snapshots/+``,     ``control/{id}/+/set``;
            ``counts/+``, ``zones/+/+``,                  ``status/workers/+``
            ``control/{id}/+/state``,
            ``ha/{id}/state`` and Home Assistant
            discovery configs
worker      ``results/+``; its own ``status/workers``     ``frames/+`` (shared or not)
            (and its pool's, ``{id}-1``..``-16``)
dashboard   ``control/+/+/set``: switching edges          ``status/#``, ``events/+``,
            (a Home Assistant logs in as one)             ``objects/+``, ``snapshots/#``,
                                                          ``counts/#``, ``zones/#``,
                                                          ``control/#``,
                                                          ``ha/+/state``, ``homeassistant/#``
site        what each of its devices may publish          what each of its devices may read
==========  ===========================================  ==================================

A *site* is the identity an edge-site bridge logs in with: it carries the traffic of
the devices behind it and nothing else. Mosquitto checks the same rules for retained
messages and last wills (a will on a topic the client may not write is refused), and
an edge's MQTT 5 response topic is its own ``{p}/results/{edge_id}``, inside what it
may read. Nothing is allowed that is not listed: there are no rules for anonymous
clients, and ``$SYS`` is readable by nobody.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from broker.credentials import validate_identity
from pipeline.errors import BrokerError
from pipeline.topics import HA_DISCOVERY_PREFIX, Topics, ha_discovery_filter

__all__ = [
    "MAX_POOL_PROCESSES",
    "Access",
    "Identity",
    "Role",
    "acl_rules",
    "acl_text",
    "identities_from",
]

MAX_POOL_PROCESSES = 16  # `camoffload worker --processes N` under one identity: N <= this

Role = Literal["device", "worker", "dashboard", "site"]
Access = Literal["read", "write"]
ROLES: tuple[Role, ...] = ("device", "worker", "dashboard", "site")


@dataclass(frozen=True, slots=True)
class Identity:
    """One MQTT username and what it is for; ``devices`` only for a ``site``."""

    name: str
    role: Role
    devices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_identity(self.name)
        if self.role not in ROLES:
            raise BrokerError(f"identity {self.name!r}: unknown role {self.role!r}")
        if self.role == "site":
            if not self.devices:
                raise BrokerError(f"site {self.name!r} needs at least one device")
            for device in self.devices:
                validate_identity(device)
        elif self.devices:
            raise BrokerError(f"only a site lists devices, not the {self.role} {self.name!r}")


def _device_rules(topics: Topics, edge_id: str) -> list[tuple[Access, str]]:
    return [
        ("write", topics.frames(edge_id)),
        ("write", topics.edge_status(edge_id)),
        ("write", topics.events(edge_id)),
        ("write", topics.objects(edge_id)),
        ("write", f"{topics.prefix}/snapshots/{edge_id}/+"),
        ("write", f"{topics.prefix}/counts/{edge_id}/+"),
        ("write", f"{topics.prefix}/zones/{edge_id}/+/+"),
        ("write", f"{topics.prefix}/control/{edge_id}/+/state"),
        ("write", topics.ha_state(edge_id)),
        ("write", ha_discovery_filter(edge_id)),
        ("read", topics.results(edge_id)),
        ("read", topics.control_set_filter(edge_id)),
    ]


def acl_rules(identity: Identity, topics: Topics) -> list[tuple[Access, str]]:
    """The ``(access, topic)`` rules of one identity, in file order."""
    if identity.role == "device":
        return [*_device_rules(topics, identity.name), ("read", topics.worker_status_filter)]
    if identity.role == "site":
        rules = [rule for d in identity.devices for rule in _device_rules(topics, d)]
        return [*rules, ("read", topics.worker_status_filter)]
    if identity.role == "worker":
        # Its own status, and that of each process `worker --processes N` runs under
        # this identity (ids <name>-1 .. <name>-N: MQTT's ACL has no partial wildcard).
        pool: list[tuple[Access, str]] = [
            ("write", topics.worker_status(f"{identity.name}-{i}"))
            for i in range(1, MAX_POOL_PROCESSES + 1)
        ]
        return [
            ("read", topics.frames_filter),
            ("write", f"{topics.prefix}/results/+"),
            ("write", topics.worker_status(identity.name)),
            *pool,
        ]
    return [
        ("read", f"{topics.prefix}/status/#"),
        ("read", f"{topics.prefix}/events/+"),
        ("read", f"{topics.prefix}/objects/+"),
        ("read", f"{topics.prefix}/snapshots/#"),
        ("read", f"{topics.prefix}/counts/#"),
        ("read", f"{topics.prefix}/zones/#"),
        ("read", f"{topics.prefix}/control/#"),
        ("write", f"{topics.prefix}/control/+/+/set"),
        ("read", topics.ha_state_filter),
        ("read", f"{HA_DISCOVERY_PREFIX}/#"),
    ]


def acl_text(identities: Iterable[Identity], topics: Topics) -> str:
    """A Mosquitto ``acl_file`` with one ``user`` block per identity."""
    seen: set[str] = set()
    lines: list[str] = [
        "# Generated by camoffload broker init: one block per identity, nothing else allowed.",
        f"# Topic prefix: {topics.prefix}",
    ]
    for identity in identities:
        if identity.name in seen:
            raise BrokerError(f"identity {identity.name!r} is listed twice")
        seen.add(identity.name)
        lines += ["", f"# {identity.role}", f"user {identity.name}"]
        lines += [f"topic {access} {topic}" for access, topic in acl_rules(identity, topics)]
    return "\n".join(lines) + "\n"


def identities_from(
    *,
    devices: Sequence[str] = (),
    workers: Sequence[str] = (),
    dashboards: Sequence[str] = (),
    sites: Sequence[tuple[str, Sequence[str]]] = (),
) -> list[Identity]:
    """Identities from name lists; a site's devices must be among ``devices``."""
    out = [Identity(d, "device") for d in devices]
    out += [Identity(w, "worker") for w in workers]
    out += [Identity(d, "dashboard") for d in dashboards]
    known = set(devices)
    for name, site_devices in sites:
        unknown = sorted(set(site_devices) - known)
        if unknown:
            raise BrokerError(f"site {name!r} lists unknown device(s): {', '.join(unknown)}")
        out.append(Identity(name, "site", tuple(site_devices)))
    names = [i.name for i in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BrokerError(f"identity names must be unique: {', '.join(dupes)}")
    return out
