"""A private certificate authority for the broker: CA, server and client certificates.

Keys are ECDSA P-256 (fast to make, and every TLS stack that Mosquitto, paho and
Python's :mod:`ssl` use accepts them). Keys are written ``0600`` and never encrypted:
the broker and the clients read them unattended, so protect them with file permissions
(the folder :func:`broker.provision.init_broker_folder` makes is ``0700``) and keep the
CA key off the broker once provisioning is done.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.credentials import write_private
from pipeline.errors import BrokerError

__all__ = ["KeyPair", "generate_ca", "issue_client_cert", "issue_server_cert", "load_key_pair"]

_LOOPBACK_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def common_name(self) -> str:
        names = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        value = names[0].value if names else ""
        return value if isinstance(value, str) else value.decode()

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, cert_path: Path, key_path: Path) -> None:
        """Write the certificate (``0644``) and the key (``0600``, never group/world)."""
        write_private(key_path, self.key_pem())
        cert_path.write_bytes(self.cert_pem())
        cert_path.chmod(0o644)


def load_key_pair(cert_path: Path, key_path: Path) -> KeyPair:
    """Read a certificate and its EC key back (e.g. the CA, to issue one more client)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise BrokerError(f"cannot load {cert_path} / {key_path}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise BrokerError(f"{key_path} is not an EC private key")
    return KeyPair(cert, key)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "camoffload"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _validity(days: int) -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    # Back-date a little so a device whose clock is slightly behind still accepts it.
    return now - dt.timedelta(hours=1), now + dt.timedelta(days=days)


def generate_ca(common_name: str = "camoffload CA", *, days: int = 3650) -> KeyPair:
    """A self-signed CA that can sign leaf certificates only (path length 0)."""
    key = _new_key()
    not_before, not_after = _validity(days)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(ca=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """A CA signs certificates and CRLs; a leaf (EC key) signs and agrees keys for TLS."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(
    ca: KeyPair,
    common_name: str,
    *,
    usage: x509.ObjectIdentifier,
    san: Sequence[x509.GeneralName],
    days: int,
) -> KeyPair:
    key = _new_key()
    not_before, not_after = _validity(days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(ca=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    return KeyPair(builder.sign(ca.key, hashes.SHA256()), key)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def issue_server_cert(ca: KeyPair, hostnames: Sequence[str] = (), *, days: int = 825) -> KeyPair:
    """The broker's certificate: valid for 127.0.0.1, localhost and ``hostnames``
    (names or IP addresses) that clients put in ``broker.url``."""
    names = list(dict.fromkeys([*_LOOPBACK_NAMES, *hostnames]))
    return _issue(
        ca,
        hostnames[0] if hostnames else "localhost",
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        san=[_general_name(h) for h in names],
        days=days,
    )


def issue_client_cert(ca: KeyPair, identity: str, *, days: int = 825) -> KeyPair:
    """A client certificate whose common name is the identity (its MQTT username)."""
    return _issue(ca, identity, usage=ExtendedKeyUsageOID.CLIENT_AUTH, san=(), days=days)
