"""Broker passwords: generated with :mod:`secrets`, hashed the way Mosquitto hashes them.

Mosquitto 2's password file holds one ``user:$7$<iterations>$<salt>$<hash>`` line per
identity: PBKDF2-HMAC-SHA512 with a 12-byte salt and a 64-byte digest, both base64
(what ``mosquitto_passwd`` writes by default). Hashing here, in Python, keeps the
password off any command line (``mosquitto_passwd -b`` would put it in ``ps`` output).
The plain password goes only to the identity's own ``0600`` file, which clients read
through ``broker.password_file``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from pipeline.errors import BrokerError

__all__ = [
    "PBKDF2_ITERATIONS",
    "generate_password",
    "hash_password",
    "password_file_text",
    "validate_identity",
    "verify_password",
    "write_private",
]

PBKDF2_ITERATIONS = 1000
"""More than ``mosquitto_passwd``'s 101; the passwords are random 192-bit tokens, so the
count guards against nothing but a weak password someone sets by hand."""

_SALT_BYTES = 12
_HASH_BYTES = 64
_IDENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def validate_identity(name: str) -> str:
    """An identity (device, worker, dashboard or site) is its MQTT username, a topic
    level and a file name: 1-64 of ``A-Z a-z 0-9 . _ -``, starting alphanumeric."""
    if not _IDENTITY.fullmatch(name):
        raise BrokerError(
            f"identity {name!r} must be 1-64 characters of A-Z, a-z, 0-9, '.', '_', '-' "
            "and start with a letter or digit"
        )
    return name


def generate_password() -> str:
    """A random password (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


def hash_password(
    password: str, *, iterations: int = PBKDF2_ITERATIONS, salt: bytes | None = None
) -> str:
    """Mosquitto's ``$7$`` PBKDF2-SHA512 hash of ``password``."""
    if iterations < 1:
        raise BrokerError("PBKDF2 iterations must be >= 1")
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, _HASH_BYTES)
    salt_b64, digest_b64 = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"$7${iterations}${salt_b64}${digest_b64}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (ours or ``mosquitto_passwd``'s)."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != "7":
        raise BrokerError("not a Mosquitto $7$ (PBKDF2-SHA512) password hash")
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError as exc:
        raise BrokerError(f"malformed $7$ password hash: {exc}") from exc
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(expected))
    return hmac.compare_digest(digest, expected)


def password_file_text(hashes: Mapping[str, str]) -> str:
    """The password file: ``username:hash`` lines for already-hashed passwords."""
    return "".join(f"{validate_identity(user)}:{hashed}\n" for user, hashed in hashes.items())


def write_private(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` readable by the owner only (``0600``), from the first
    byte on: the file is created with that mode, not chmod-ed after the fact."""
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
        fh.write(raw)
