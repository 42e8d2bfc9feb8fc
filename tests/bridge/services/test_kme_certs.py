"""The KME's local CA: certificate roles, SAE names as CNs, private key permissions, CA reuse."""

from __future__ import annotations

import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bridge.services import kme_certs
from qesif_core.errors import UserInputError


def load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_certificates_have_their_roles_and_names(tmp_path):
    paths = kme_certs.generate(tmp_path, ["SAE-gw0", "SAE-cc"])
    ca, server = load(paths.ca_cert), load(paths.server_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    server_usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in server_usage
    for name in ("SAE-gw0", "SAE-cc"):
        cert = load(paths.sae_cert(name))
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
        assert (
            ExtendedKeyUsageOID.CLIENT_AUTH
            in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        )
        assert stat.S_IMODE(paths.sae_key(name).stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.server_key.stat().st_mode) == 0o600


def test_an_existing_ca_is_reused_for_new_saes(tmp_path):
    first = kme_certs.generate(tmp_path, ["A"])
    ca_before = first.ca_cert.read_bytes()
    second = kme_certs.generate(tmp_path, ["B"])
    assert second.ca_cert.read_bytes() == ca_before
    load(second.sae_cert("B")).verify_directly_issued_by(load(first.ca_cert))
    load(second.sae_cert("A")).verify_directly_issued_by(load(first.ca_cert))


@pytest.mark.parametrize("names", [["bad name"], ["../etc"], [""], ["A", "A"], ["x" * 200]])
def test_bad_sae_names_are_refused(tmp_path, names):
    with pytest.raises(UserInputError, match="--sae"):
        kme_certs.generate(tmp_path, names)
