"""A local certificate authority for the KME: server certificate for localhost and one client
certificate per SAE (the SAE ID is the certificate's common name).

Private keys are EC P-256 drawn by ``cryptography`` from the operating system's CSPRNG: they protect a
real TLS service, so they are deliberately not reproducible from a simulation seed. Key files are
written with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from qesif_core.errors import UserInputError

#: SAE IDs: what a URL path segment and a certificate CN can both carry without escaping.
SAE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

CA_CERT, CA_KEY = "ca.pem", "ca.key"
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"
SAE_DIR = "sae"


@dataclass(frozen=True)
class CertPaths:
    """Where ``generate`` put the files of one KME installation."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / CA_CERT

    @property
    def server_cert(self) -> Path:
        return self.root / SERVER_CERT

    @property
    def server_key(self) -> Path:
        return self.root / SERVER_KEY

    def sae_cert(self, sae_id: str) -> Path:
        return self.root / SAE_DIR / f"{sae_id}.pem"

    def sae_key(self, sae_id: str) -> Path:
        return self.root / SAE_DIR / f"{sae_id}.key"


def check_sae_id(value: object, field: str) -> str:
    """``value`` if it is a valid SAE ID, else a UserInputError naming ``field``."""
    if not isinstance(value, str) or not SAE_ID_PATTERN.fullmatch(value):
        raise UserInputError(
            f"{field} must be an SAE ID (letters, digits, '.', '_', ':', '-'; at most 128) (got {value!r})"
        )
    return value


def generate(out_dir: Path, sae_ids: list[str], *, days: int = 365) -> CertPaths:
    """Write (or reuse) the CA in ``out_dir``, a fresh server certificate and one certificate per SAE.

    An existing ``ca.pem``/``ca.key`` pair is reused, so SAEs can be added later without re-issuing
    the others.
    """
    for index, sae_id in enumerate(sae_ids):
        check_sae_id(sae_id, f"--sae[{index}]")
    if len(set(sae_ids)) != len(sae_ids):
        raise UserInputError(f"--sae names must be distinct (got {sae_ids})")
    if days < 1:
        raise UserInputError(f"--days must be >= 1 (got {days})")
    paths = CertPaths(Path(out_dir))
    (paths.root / SAE_DIR).mkdir(parents=True, exist_ok=True)
    if paths.ca_cert.exists() and (paths.root / CA_KEY).exists():
        ca_cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        ca_key = serialization.load_pem_private_key((paths.root / CA_KEY).read_bytes(), password=None)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _issue(_name("qesif KME local CA"), ca_key.public_key(), ca_key, None, days, ca=True)
        _write_key(paths.root / CA_KEY, ca_key)
        paths.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _issue(_name("localhost"), server_key.public_key(), ca_key, ca_cert, days, server=True)
    _write_key(paths.server_key, server_key)
    paths.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    for sae_id in sae_ids:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(_name(sae_id), key.public_key(), ca_key, ca_cert, days)
        _write_key(paths.sae_key(sae_id), key)
        paths.sae_cert(sae_id).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return paths


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject, public_key, signing_key, issuer_cert, days, *, ca=False, server=False
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer = issuer_cert.subject if issuer_cert is not None else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False
        )
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
    return builder.sign(signing_key, hashes.SHA256())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a private key readable by its owner only."""
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)
