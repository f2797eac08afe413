"""The internal CA: deterministic per seed, and its certificates pass a real TLS handshake."""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from starling_infra.tls import ServerCertificate, internal_ca

pytestmark = pytest.mark.unit

SEED = b"0123456789abcdef" * 4
OTHER_SEED = b"fedcba9876543210" * 4
STORE_NAMES = [
    "starling-store",
    "starling-store.starling.svc",
    "starling-store.starling.svc.cluster.local",
]


def _handshake(server: ServerCertificate, ca_pem: str, server_hostname: str) -> None:
    """A full TLS handshake in memory: the server presents `server`, the client checks it."""
    with tempfile.TemporaryDirectory() as tmp:
        cert_file = Path(tmp, "tls.crt")
        key_file = Path(tmp, "tls.key")
        cert_file.write_text(server.certificate_pem)
        key_file.write_text(server.private_key_pem)
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(cadata=ca_pem)
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(client_in, client_out, server_hostname=server_hostname)
    peer = server_context.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(10):
        done = 0
        for side, outgoing, incoming in (
            (client, client_out, server_in),
            (peer, server_out, client_in),
        ):
            try:
                side.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
            if outgoing.pending:
                incoming.write(outgoing.read())
        if done == 2:
            return
    raise AssertionError("handshake did not complete")


def test_same_seed_renders_the_same_bytes() -> None:
    first, second = internal_ca(SEED), internal_ca(SEED)
    assert first.certificate_pem == second.certificate_pem
    assert first.issue("store", STORE_NAMES) == second.issue("store", STORE_NAMES)


def test_another_seed_or_purpose_gives_other_keys() -> None:
    ca = internal_ca(SEED)
    assert internal_ca(OTHER_SEED).certificate_pem != ca.certificate_pem
    assert (
        ca.issue("store", STORE_NAMES).private_key_pem
        != ca.issue("db", STORE_NAMES).private_key_pem
    )
    other = internal_ca(OTHER_SEED).issue("store", STORE_NAMES)
    assert other.private_key_pem != ca.issue("store", STORE_NAMES).private_key_pem


def test_ca_and_server_certificates_carry_the_right_extensions() -> None:
    ca = internal_ca(SEED)
    ca_cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca_cert.not_valid_before_utc.year == 2026
    assert ca_cert.not_valid_after_utc.year == 2036
    server = x509.load_pem_x509_certificate(
        ca.issue("store", [*STORE_NAMES, "127.0.0.1"]).certificate_pem.encode()
    )
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == STORE_NAMES
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert server.issuer == ca_cert.subject
    server.verify_directly_issued_by(ca_cert)


def test_a_client_trusting_the_ca_completes_a_handshake_by_name() -> None:
    ca = internal_ca(SEED)
    _handshake(ca.issue("store", STORE_NAMES), ca.certificate_pem, "starling-store.starling.svc")


def test_a_client_with_another_ca_is_refused() -> None:
    server = internal_ca(SEED).issue("store", STORE_NAMES)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        _handshake(server, internal_ca(OTHER_SEED).certificate_pem, "starling-store")


def test_a_name_the_certificate_was_not_issued_for_is_refused() -> None:
    ca = internal_ca(SEED)
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        _handshake(ca.issue("store", STORE_NAMES), ca.certificate_pem, "starling-db")


def test_bad_arguments_fail_with_a_message() -> None:
    with pytest.raises(ValueError, match="seed is empty"):
        internal_ca(b"")
    with pytest.raises(ValueError, match="no names"):
        internal_ca(SEED).issue("store", [])
    with pytest.raises(ValueError, match="reserved"):
        internal_ca(SEED).issue("ca", STORE_NAMES)
