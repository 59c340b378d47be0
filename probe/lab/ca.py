"""The lab's certificate authorities: a trusted lab root and a rogue interception chain.

`LabCA` is the root the probe trusts (written to ``<state_dir>/ca.pem``); it issues one
leaf per target covering the target's hostnames. `RogueChain` imitates Kazakhstan's 2019
interception: leaf (minted per SNI, cached) <- "C=KZ, CN=Security Certificate" <-
"CN=Qaznet Trust Network". The rogue root is never given to the probe.

Keys are ECDSA P-256 so handshakes stay cheap.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LAB_ROOT_NAME = "curfew lab root CA"
ROGUE_ROOT_NAME = "Qaznet Trust Network"
ROGUE_INTERMEDIATE_NAME = "Security Certificate"

_VALID_FROM = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)  # before every scenario date
_VALID_UNTIL = dt.datetime(2045, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Issued:
    """A certificate with its key, as PEM."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _name(common_name: str, country: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, country)] if country else []
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _alt_name(host: str) -> x509.GeneralName:
    """An IP address SAN for an address (a DoH server at 127.0.0.1), else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _issue(
    subject: x509.Name,
    issuer: Issued | None,
    *,
    ca: bool,
    hosts: tuple[str, ...] = (),
    path_length: int | None = None,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    signer_key = issuer.key if issuer else key
    issuer_name = issuer.cert.subject if issuer else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_VALID_FROM)
        .not_valid_after(_VALID_UNTIL)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
        builder = builder.add_extension(usage, critical=True)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_alt_name(h) for h in hosts]), critical=False
        )
    return Issued(builder.sign(signer_key, hashes.SHA256()), key)


def _server_context(leaf: Issued, chain: tuple[Issued, ...], path: Path) -> ssl.SSLContext:
    """A server-side context presenting `leaf` followed by `chain` (files under `path`)."""
    path.mkdir(parents=True, exist_ok=True)
    cert_file = path / "chain.pem"
    key_file = path / "key.pem"
    cert_file.write_bytes(leaf.cert_pem + b"".join(c.cert_pem for c in chain))
    key_file.write_bytes(leaf.key_pem)
    key_file.chmod(0o600)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    # No TLS 1.3 session tickets: the probe never resumes a session (every measurement is a
    # fresh handshake), and issuing two tickets per handshake was an eighth of its cost.
    context.num_tickets = 0
    return context


class LabCA:
    """The lab's trusted root: issues leaves for target hostnames.

    >>> ca = LabCA(Path("/tmp/lab"))          # doctest: +SKIP
    >>> ctx = ca.server_context("facebook", ("www.facebook.com",))  # doctest: +SKIP
    """

    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir
        self.root = _issue(_name(LAB_ROOT_NAME), None, ca=True, path_length=0)
        state_dir.mkdir(parents=True, exist_ok=True)
        self.ca_pem_path = state_dir / "ca.pem"
        self.ca_pem_path.write_bytes(self.root.cert_pem)

    def issue_leaf(self, hosts: tuple[str, ...]) -> Issued:
        return _issue(_name(hosts[0]), self.root, ca=False, hosts=hosts)

    def server_context(self, label: str, hosts: tuple[str, ...]) -> ssl.SSLContext:
        """A server context for a leaf covering `hosts`; files go to ``certs/<label>/``."""
        return _server_context(self.issue_leaf(hosts), (), self._dir / "certs" / label)

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting only the lab root (for relays and tests)."""
        return ssl.create_default_context(cafile=str(self.ca_pem_path))


class RogueChain:
    """An interception chain named like Kazakhstan's 2019 one; leaves minted per SNI."""

    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir / "rogue"
        self.root = _issue(_name(ROGUE_ROOT_NAME), None, ca=True, path_length=1)
        self.intermediate = _issue(_name(ROGUE_INTERMEDIATE_NAME, "KZ"), self.root, ca=True, path_length=0)
        self._contexts: dict[str, ssl.SSLContext] = {}

    def server_context(self, server_name: str) -> ssl.SSLContext:
        """Context presenting leaf(server_name) + intermediate; cached per name."""
        name = server_name.lower().rstrip(".") or "unnamed.invalid"
        context = self._contexts.get(name)
        if context is None:
            leaf = _issue(_name(name), self.intermediate, ca=False, hosts=(name,))
            context = _server_context(leaf, (self.intermediate,), self._dir / name)
            self._contexts[name] = context
        return context
