"""Broker tooling: launch a real Mosquitto (dev, hardened or edge-site bridge) or the
embedded fallback on 127.0.0.1, and provision certificates, passwords and ACLs.

The provisioning and hardened/bridge modules load on first use: the embedded broker
runs as ``python -m broker.embedded`` and should not pay for ``cryptography``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from broker.choose import BrokerKind, local_broker
from broker.embedded import EMBEDDED_LIMITATIONS, embedded_broker
from broker.mosquitto import dev_config, find_mosquitto, mosquitto_broker
from broker.process import BrokerInfo, BrokerProcess, free_port

if TYPE_CHECKING:
    from broker.acl import Identity, Role, acl_rules, acl_text, identities_from
    from broker.bridge import BridgeSettings, bridge_broker, bridge_config
    from broker.certs import (
        KeyPair,
        generate_ca,
        issue_client_cert,
        issue_server_cert,
        load_key_pair,
    )
    from broker.credentials import generate_password, hash_password, verify_password
    from broker.hardened import HardenedFiles, hardened_broker, hardened_config
    from broker.provision import ClientFiles, Provisioned, init_broker_folder, read_manifest

_LAZY = {
    "broker.acl": ("Identity", "Role", "acl_rules", "acl_text", "identities_from"),
    "broker.bridge": ("BridgeSettings", "bridge_broker", "bridge_config"),
    "broker.certs": (
        "KeyPair",
        "generate_ca",
        "issue_client_cert",
        "issue_server_cert",
        "load_key_pair",
    ),
    "broker.credentials": ("generate_password", "hash_password", "verify_password"),
    "broker.hardened": ("HardenedFiles", "hardened_broker", "hardened_config"),
    "broker.provision": ("ClientFiles", "Provisioned", "init_broker_folder", "read_manifest"),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'broker' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "EMBEDDED_LIMITATIONS",
    "BridgeSettings",
    "BrokerInfo",
    "BrokerKind",
    "BrokerProcess",
    "ClientFiles",
    "HardenedFiles",
    "Identity",
    "KeyPair",
    "Provisioned",
    "Role",
    "acl_rules",
    "acl_text",
    "bridge_broker",
    "bridge_config",
    "dev_config",
    "embedded_broker",
    "find_mosquitto",
    "free_port",
    "generate_ca",
    "generate_password",
    "hardened_broker",
    "hardened_config",
    "hash_password",
    "identities_from",
    "init_broker_folder",
    "issue_client_cert",
    "issue_server_cert",
    "load_key_pair",
    "local_broker",
    "mosquitto_broker",
    "read_manifest",
    "verify_password",
]
