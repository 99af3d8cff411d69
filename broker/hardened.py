"""The hardened Mosquitto: TLS only, a password per identity, per-identity ACLs.

It reads what ``camoffload broker init`` wrote (see :mod:`broker.provision`)::

    FOLDER/            0700
      ca.crt           clients trust this
      server.crt       the broker's certificate (127.0.0.1, localhost, --hostname ...)
      server.key       0600
      passwd           0600  user:$7$... (PBKDF2-SHA512) lines
      acl              0600  one ``user`` block per identity (broker.acl)

and refuses everything else: no plain-TCP listener, no anonymous clients, TLS 1.2 at
least, and a client id always equal to the username (``use_username_as_clientid``),
so one identity cannot take over another's session by reusing its client id. One
connection per identity: two processes that share an identity disconnect each other.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from broker.mosquitto import find_mosquitto
from broker.process import HOST, BrokerProcess
from pipeline.errors import BrokerError

__all__ = ["HARDENED_MAX_PACKET_BYTES", "HardenedFiles", "hardened_broker", "hardened_config"]

HARDENED_MAX_PACKET_BYTES = 16 * 1024 * 1024
"""Twice the protocol's 8 MiB frame payload cap: a client cannot make the broker buffer
arbitrarily large packets."""


@dataclass(frozen=True, slots=True)
class HardenedFiles:
    """Where the hardened broker's certificates, password file and ACL live."""

    folder: Path

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    @property
    def password_file(self) -> Path:
        return self.folder / "passwd"

    @property
    def acl_file(self) -> Path:
        return self.folder / "acl"

    @property
    def data_dir(self) -> Path:
        """The broker's persistence folder when it runs from the CLI."""
        return self.folder / "data"

    def check(self) -> None:
        """Raise :class:`BrokerError` naming the first file that is missing."""
        for path in (
            self.ca_file,
            self.server_cert,
            self.server_key,
            self.password_file,
            self.acl_file,
        ):
            if not path.is_file():
                raise BrokerError(
                    f"{path} is missing: run `camoffload broker init --out {self.folder}` first"
                )


def conf_path(path: Path) -> str:
    """An absolute path for a Mosquitto config line (which cannot quote whitespace)."""
    text = str(path.resolve())
    if any(c.isspace() for c in text):
        raise BrokerError(f"Mosquitto cannot use a path with whitespace: {text!r}")
    return text


def run_as_user() -> str:
    """The user that owns the files we write. Mosquitto started as root drops to the
    ``mosquitto`` user unless told otherwise, and that user cannot read our 0600 files."""
    return pwd.getpwuid(os.geteuid()).pw_name


def tls_listener_lines(
    files: HardenedFiles, port: int, *, bind: str = HOST, require_client_cert: bool = False
) -> list[str]:
    """A TLS-only listener with password + ACL checks (shared with the bridge site)."""
    return [
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {conf_path(files.password_file)}",
        f"acl_file {conf_path(files.acl_file)}",
        f"max_packet_size {HARDENED_MAX_PACKET_BYTES}",
        f"listener {port} {bind}",
        "protocol mqtt",
        # A listener option: it must follow its `listener` line.
        "use_username_as_clientid true",
        f"cafile {conf_path(files.ca_file)}",
        f"certfile {conf_path(files.server_cert)}",
        f"keyfile {conf_path(files.server_key)}",
        "tls_version tlsv1.2",
        # With ``true`` every client must also present a certificate signed by our CA
        # (mutual TLS); the username and password are checked either way.
        f"require_certificate {'true' if require_client_cert else 'false'}",
    ]


def persistence_lines(data_dir: Path | None) -> list[str]:
    if data_dir is None:
        return ["persistence false"]
    return [
        "persistence true",
        f"persistence_location {conf_path(data_dir)}/",
        "autosave_interval 30",
    ]


def common_tail_lines(*, max_queued_messages: int = 10_000) -> list[str]:
    return [
        # Nagle's algorithm meets delayed ACKs: ~90 ms per request/reply without this.
        "set_tcp_nodelay true",
        # The default of 1000 silently drops QoS 1 messages for a slow subscriber.
        f"max_queued_messages {max_queued_messages}",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages true",  # refused logins are worth a log line here
    ]


def hardened_config(
    files: HardenedFiles,
    port: int,
    *,
    bind: str = HOST,
    data_dir: Path | None = None,
    require_client_cert: bool = False,
) -> str:
    """The hardened ``mosquitto.conf``; ``data_dir`` turns persistence on."""
    lines = [
        "# camoffload hardened broker: TLS only, no anonymous clients, per-identity ACLs",
        f"user {run_as_user()}",
        *tls_listener_lines(files, port, bind=bind, require_client_cert=require_client_cert),
        *persistence_lines(data_dir),
        *common_tail_lines(),
    ]
    return "\n".join(lines) + "\n"


def hardened_broker(
    folder: Path,
    *,
    port: int = 0,
    bind: str = HOST,
    data_dir: Path | None = None,
    require_client_cert: bool = False,
    binary: str | None = None,
) -> BrokerProcess:
    """A :class:`BrokerProcess` running the hardened Mosquitto from ``folder``.

    ``bind`` is 127.0.0.1 unless you mean to serve other machines (``0.0.0.0``);
    ``data_dir`` keeps sessions and queued messages across restarts.
    """
    files = HardenedFiles(Path(folder))
    files.check()
    exe = binary or find_mosquitto()
    if exe is None:
        raise BrokerError(
            "mosquitto not found on PATH or in /usr/sbin: the hardened broker needs it"
        )
    if bind not in (HOST, "0.0.0.0"):  # noqa: S104 - serving the network is the point
        raise BrokerError(f"bind must be {HOST} or 0.0.0.0, not {bind!r}")
    if data_dir is not None:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def argv_for(port: int, workdir: Path) -> list[str]:
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            hardened_config(
                files, port, bind=bind, data_dir=data_dir, require_client_cert=require_client_cert
            ),
            encoding="utf-8",
        )
        return [exe, "-c", str(conf)]

    return BrokerProcess(
        kind="mosquitto-hardened",
        argv_for=argv_for,
        port=port,
        protocol="5",
        shared_subscriptions=True,
        tls=True,
        keep_freed_memory=True,
    )
