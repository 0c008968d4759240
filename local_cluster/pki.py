"""Certificates of the local cluster: one CA, the API server's serving certificate, the admin client
certificate, the service-account signing key and the operators' webhook certificate.

Everything is generated once per folder and reused. The webhook certificate names 127.0.0.1, since the
API server calls each webhook at `https://127.0.0.1:<port>` (there is no kube-proxy to reach a Service),
and also each operator's in-cluster Service name, which the operators' certificate managers verify before
they accept a certificate that they did not make themselves.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK = ipaddress.ip_address("127.0.0.1")
# The first address of the Service CIDR that the API server is started with.
KUBERNETES_SERVICE_IP = ipaddress.ip_address("10.96.0.1")
# cert-controller, which the Training Operator uses, verifies its CA against this name.
WEBHOOK_CA_NAMES = ("training-operator-ca",)
WEBHOOK_DNS_NAMES = ("training-operator.kubeflow.svc",)
VALID_FOR = datetime.timedelta(days=3650)


class Pki:
    """Paths of the PEM files in one folder."""

    def __init__(self, root: Path):
        self.root = root
        self.ca_cert, self.ca_key = root / "ca.crt", root / "ca.key"
        self.apiserver_cert, self.apiserver_key = root / "apiserver.crt", root / "apiserver.key"
        self.admin_cert, self.admin_key = root / "admin.crt", root / "admin.key"
        self.webhook_cert, self.webhook_key = root / "webhook.crt", root / "webhook.key"
        self.sa_key, self.sa_pub = root / "service-account.key", root / "service-account.pub"


def ensure_pki(root: Path) -> Pki:
    """Create the certificates under `root` unless a complete set is already there."""
    pki = Pki(root)
    if pki.webhook_cert.exists():
        return pki
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    ca_key = _new_key()
    ca_cert = _certificate(
        "local-cluster-ca", ca_key.public_key(), ca_key, None, is_ca=True, dns=WEBHOOK_CA_NAMES, ips=()
    )
    _write(pki.ca_cert, pki.ca_key, ca_cert, ca_key)
    _issue(
        pki.apiserver_cert,
        pki.apiserver_key,
        "kube-apiserver",
        ca_cert,
        ca_key,
        dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
        ips=(LOOPBACK, KUBERNETES_SERVICE_IP),
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    _issue(
        pki.admin_cert,
        pki.admin_key,
        "local-admin",
        ca_cert,
        ca_key,
        dns=(),
        ips=(),
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        organization="system:masters",
    )
    sa_key = _new_key()
    pki.sa_key.write_bytes(_key_pem(sa_key))
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    # Written last: its presence marks the set as complete.
    _issue(
        pki.webhook_cert,
        pki.webhook_key,
        "local-cluster-webhooks",
        ca_cert,
        ca_key,
        dns=WEBHOOK_DNS_NAMES,
        ips=(LOOPBACK,),
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    return pki


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    # PKCS#1 ("RSA PRIVATE KEY"): cert-controller and the API server both read it.
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def _write(cert_path: Path, key_path: Path, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> None:
    key_path.write_bytes(_key_pem(key))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _issue(cert_path, key_path, common_name, ca_cert, ca_key, *, dns, ips, usage, organization=None) -> None:
    key = _new_key()
    cert = _certificate(common_name, key.public_key(), ca_key, ca_cert, dns=dns, ips=ips, usage=usage, org=organization)
    _write(cert_path, key_path, cert, key)


def _certificate(common_name, public_key, signing_key, issuer, *, is_ca=False, dns, ips, usage=None, org=None):
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if org:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    subject = x509.Name(attributes)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(i) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        )
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())
