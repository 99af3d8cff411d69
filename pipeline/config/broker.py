"""``[broker]``: how every process reaches the MQTT broker, and with what credentials.

The password is a secret: the loader takes it only from ``CAMOFFLOAD_BROKER_PASSWORD``
(:data:`PASSWORD_ENV`), and a process reads it from there or from ``password_file``
when it connects, never from the command line, a TOML file or the URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from pipeline.config.constraints import Positive, check_declared
from pipeline.errors import ConfigError

__all__ = ["PASSWORD_ENV", "BrokerConfig", "MqttProtocol"]

PASSWORD_ENV = "CAMOFFLOAD_BROKER_PASSWORD"  # noqa: S105 - the variable name, not a secret

MqttProtocol = Literal["5", "3.1.1"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerConfig:
    """How to reach the MQTT broker."""

    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: str | None = None
    protocol: MqttProtocol = "5"
    keepalive_s: Annotated[int, msgspec.Meta(ge=5, le=3600)] = 30
    connect_timeout_s: Positive = 15.0  # keep retrying a broker that is not up yet this long
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def __post_init__(self) -> None:
        check_declared(self, "broker")
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ConfigError(
                f"broker url {self.url!r} must start with mqtt:// or mqtts://", key="broker.url"
            )
        if not parts.hostname:
            raise ConfigError(f"broker url {self.url!r} has no host", key="broker.url")
        if parts.password is not None:
            raise ConfigError(
                f"broker url must not contain a password: set {PASSWORD_ENV} "
                "or broker.password_file",
                key="broker.url",
            )
        try:
            _ = parts.port
        except ValueError as exc:
            raise ConfigError(f"broker url {self.url!r}: {exc}", key="broker.url") from exc
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(
                f"broker url {self.url!r} takes no path, query or fragment", key="broker.url"
            )
        if parts.username and self.username and parts.username != self.username:
            raise ConfigError(
                "broker.username and the user in broker.url disagree", key="broker.username"
            )
        if self.password is not None and self.password_file is not None:
            raise ConfigError(
                f"give the password by {PASSWORD_ENV} or broker.password_file, not both",
                key="broker.password_file",
            )
        if (self.password is not None or self.password_file is not None) and not self.user:
            raise ConfigError("a broker password requires a username", key="broker.username")
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError(
                "broker.cert_file and broker.key_file go together", key="broker.cert_file"
            )
        if parts.scheme != "mqtts" and (self.ca_file or self.cert_file):
            # Otherwise a typo in the scheme would quietly send the password in clear.
            raise ConfigError(
                "broker.ca_file, cert_file and key_file are for TLS: use an mqtts:// url",
                key="broker.url",
            )

    @property
    def host(self) -> str:
        host = urlsplit(self.url).hostname
        assert host is not None  # checked in __post_init__
        return host

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def user(self) -> str | None:
        return self.username or urlsplit(self.url).username or None

    def read_password(self) -> str | None:
        """The password, from the environment-supplied value or the password file."""
        if self.password_file is None:
            return self.password
        try:
            return Path(self.password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read broker.password_file {self.password_file!r}: {exc}",
                key="broker.password_file",
            ) from exc
