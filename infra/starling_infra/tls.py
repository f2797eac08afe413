"""The program's internal certificate authority, derived from the stack's secret seed.

Why derive instead of generate: Pulumi renders the program on every `pulumi up`, and a fresh
random key each run would show a diff (and roll every pod that mounts a certificate) on each
run. Like the passwords (passwords.py), every key here is HMAC-SHA256(seed, label), so the
same seed renders the same bytes:

- keys: an ECDSA P-256 scalar from HMAC-SHA256(seed, b"starling-internal-ca:" + purpose);
- signatures: RFC 6979 deterministic ECDSA (`ecdsa_deterministic=True`), so even the
  signature bytes repeat;
- validity: fixed (2026-01-01 for ten years), never "now", which would change each run;
- serial numbers: derived from the same HMAC, distinct per purpose.

Rotating the seed rotates the CA and every certificate at once, as it does every password.
Clients verify the chain against `InternalCa.certificate_pem` and the server's name against
the certificate's subjectAltName, so a server must be reached by one of the names it was
issued for.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_LABEL = b"starling-internal-ca:"
_CA_PURPOSE = "ca"
NOT_BEFORE = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(2036, 1, 1, tzinfo=datetime.UTC)
# The order of the P-256 group: a private scalar must lie in [1, n - 1].
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
# X.509 caps a commonName at 64 characters (RFC 5280 ub-common-name).
_MAX_COMMON_NAME = 64

# Keys of the Kubernetes Secret (type kubernetes.io/tls) that carries a server's certificate.
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
CA_CERT_KEY = "ca.crt"


def _digest(seed: bytes, purpose: str) -> bytes:
    return hmac.new(seed, _LABEL + purpose.encode(), hashlib.sha256).digest()


def _private_key(seed: bytes, purpose: str) -> ec.EllipticCurvePrivateKey:
    scalar = int.from_bytes(_digest(seed, f"key/{purpose}"), "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def _serial(seed: bytes, purpose: str) -> int:
    # 159 bits, never zero: RFC 5280 allows at most 20 octets, positive.
    return (int.from_bytes(_digest(seed, f"serial/{purpose}"), "big") >> 97) | 1


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Starling"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:_MAX_COMMON_NAME]),
        ]
    )


def _subject_alt_names(names: Sequence[str]) -> list[x509.GeneralName]:
    """DNS names as dNSName, literal addresses as iPAddress (what hostname checks compare)."""
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class ServerCertificate:
    """A server's certificate and key, PEM; the key is as secret as the seed it came from."""

    certificate_pem: str
    private_key_pem: str


class InternalCa:
    """A self-signed CA whose key, certificate and every issued certificate follow from a seed."""

    def __init__(self, seed: bytes) -> None:
        if not seed:
            raise ValueError("internal_ca: the seed is empty; pass the stack's secretSeed")
        self._seed = seed
        self._key = _private_key(seed, _CA_PURPOSE)

    @cached_property
    def _certificate(self) -> x509.Certificate:
        public_key = self._key.public_key()
        subject = _name("Starling internal CA")
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public_key)
            .serial_number(_serial(self._seed, _CA_PURPOSE))
            .not_valid_before(NOT_BEFORE)
            .not_valid_after(NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(self._key, hashes.SHA256(), ecdsa_deterministic=True)
        )

    @property
    def certificate_pem(self) -> str:
        return _pem(self._certificate)

    def issue(self, purpose: str, dns_names: Sequence[str]) -> ServerCertificate:
        """A server certificate for `dns_names` (subjectAltName), usable for TLS serverAuth.

        `purpose` labels the key: the same purpose and seed always give the same key, and two
        purposes never share one. Literal IP addresses in `dns_names` become iPAddress entries.
        """
        if not purpose or purpose == _CA_PURPOSE:
            raise ValueError(f"issue: purpose {purpose!r} is reserved or empty; name the server")
        if not dns_names:
            raise ValueError(f"issue({purpose!r}): no names; a client could never verify it")
        key = _private_key(self._seed, purpose)
        ca_public = self._key.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(f"starling {purpose}"))
            .issuer_name(self._certificate.subject)
            .public_key(key.public_key())
            .serial_number(_serial(self._seed, purpose))
            .not_valid_before(NOT_BEFORE)
            .not_valid_after(NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName(_subject_alt_names(dns_names)), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
            )
            .sign(self._key, hashes.SHA256(), ecdsa_deterministic=True)
        )
        private_key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return ServerCertificate(certificate_pem=_pem(certificate), private_key_pem=private_key_pem)


def internal_ca(seed: bytes) -> InternalCa:
    """The stack's internal CA; `seed` is the stack's secretSeed (as bytes)."""
    return InternalCa(seed)


def tls_secret_data(
    seed: pulumi.Output[str], purpose: str, dns_names: Sequence[str]
) -> pulumi.Output[dict[str, str]]:
    """`stringData` for a kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt), a Pulumi secret."""

    def render(value: str) -> dict[str, str]:
        ca = internal_ca(value.encode())
        server = ca.issue(purpose, dns_names)
        return {
            TLS_CERT_KEY: server.certificate_pem,
            TLS_KEY_KEY: server.private_key_pem,
            CA_CERT_KEY: ca.certificate_pem,
        }

    return pulumi.Output.secret(seed.apply(render))


def ca_certificate(seed: pulumi.Output[str]) -> pulumi.Output[str]:
    """The CA certificate alone (public: clients mount it to verify servers)."""
    return seed.apply(lambda value: internal_ca(value.encode()).certificate_pem)
