"""A throwaway PKI for one local cluster, generated in Python.

Why generate it here rather than with ``openssl`` or kubeadm: the launcher must work
on a machine with nothing but Python and the Go-built control plane, and a fresh CA
per cluster means two clusters (or a stale one) can never trust each other's
clients. Everything lives only as long as the cluster's state directory.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Certificates outlive any test session comfortably; the CA dies with the cluster.
_VALIDITY = datetime.timedelta(days=30)
_BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM private key."""

    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class ClusterPKI:
    """Everything the control plane needs to authenticate its parts to each other."""

    ca: KeyPair
    serving: KeyPair
    """Serving cert for 127.0.0.1/localhost, used by the apiserver, KCM and scheduler."""
    admin: KeyPair
    """Client cert in ``system:masters``: all components and tests use it."""
    service_account_key_pem: bytes
    service_account_pub_pem: bytes

    def write(self, directory: Path) -> dict[str, Path]:
        """Write the PEM files (keys mode 0600) and return their paths by role."""
        directory.mkdir(parents=True, exist_ok=True)
        files = {
            "ca.crt": self.ca.cert_pem,
            "ca.key": self.ca.key_pem,
            "serving.crt": self.serving.cert_pem,
            "serving.key": self.serving.key_pem,
            "admin.crt": self.admin.cert_pem,
            "admin.key": self.admin.key_pem,
            "sa.key": self.service_account_key_pem,
            "sa.pub": self.service_account_pub_pem,
        }
        paths: dict[str, Path] = {}
        for name, data in files.items():
            path = directory / name
            path.write_bytes(data)
            if name.endswith(".key"):
                path.chmod(0o600)
            paths[name] = path
        return paths


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
    *,
    is_ca: bool = False,
    server: bool = False,
    client: bool = False,
) -> bytes:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    else:
        builder = builder.add_extension(
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
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
    cert = builder.sign(issuer_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


def generate(cluster_name: str, now: datetime.datetime | None = None) -> ClusterPKI:
    """Generate a CA, a loopback serving cert, an admin client cert and the SA key pair.

    EC P-256 keys keep generation to milliseconds; the service-account key is RSA
    because every Kubernetes token verifier accepts RS256.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"specops-{cluster_name}-ca")
    ca_cert = _issue(ca_name, ca_key, ca_name, ca_key, now, is_ca=True)

    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving_cert = _issue(
        _name("kube-apiserver"), serving_key, ca_name, ca_key, now, server=True, client=True
    )

    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin_cert = _issue(
        _name("specops-admin", "system:masters"), admin_key, ca_name, ca_key, now, client=True
    )

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_pub = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ClusterPKI(
        ca=KeyPair(ca_cert, _key_pem(ca_key)),
        serving=KeyPair(serving_cert, _key_pem(serving_key)),
        admin=KeyPair(admin_cert, _key_pem(admin_key)),
        service_account_key_pem=_key_pem(sa_key),
        service_account_pub_pem=sa_pub,
    )
