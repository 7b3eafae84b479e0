"""The PKI of a local cluster: every certificate and key its processes need.

Owns the certificate authorities (cluster, etcd, front proxy), the leaf
certificates issued from them (etcd members, kube-apiserver serving and client
certificates, kube-controller-manager, kube-scheduler, the kwok controller and
the admin user), the service-account signing key, and the kubeconfigs that embed
them. The local provider calls ``plan_cluster_pki`` when it provisions a
cluster, ``write_pki`` to put the result on disk, and ``kubeconfig_for`` for each
component that talks to the API server.

``cryptography`` does the heavy lifting; no ``openssl`` binary is involved.
Planning is pure (``now`` is passed in, nothing touches the disk); only
``write_pki``, ``load_authorities`` and ``certificate_expiries`` do I/O.
``plan_leaf_certificates`` re-issues every leaf from the existing CAs, for
certificate rotation.

Hard-won facts kept here:

* Leaf keys are ECDSA P-256 (fast to generate, accepted by Go's TLS stack,
  etcd and Python's ``ssl``). Private keys are PKCS#8 PEM, which
  ``tls.X509KeyPair`` and client-go's ``keyutil`` both read.
* The service-account key is RSA 2048: kube-apiserver accepts RSA or ECDSA
  for ``--service-account-signing-key-file``, and RS256 is what every token
  consumer supports.
* etcd members use one certificate for serving clients and for peer traffic,
  so it carries both ``serverAuth`` and ``clientAuth``.
* Kubernetes maps a client certificate's CN to the user name and each O to a
  group; ``system:masters`` bypasses RBAC entirely.
* ``not_valid_before`` is set five minutes in the past to tolerate clock skew,
  and a leaf never outlives the CA that signed it.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pilothouse import errors
from pilothouse.atomic_files import write_atomically

__all__ = [
    "CertificateAuthority",
    "CertificateInfo",
    "ClusterPKIRequest",
    "IssuedCertificate",
    "PrivateKey",
    "certificate_expiries",
    "create_ca",
    "issue_certificate",
    "kubeconfig_for",
    "load_authorities",
    "plan_cluster_pki",
    "plan_leaf_certificates",
    "read_certificates",
    "write_pki",
]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

#: Allowance for clocks that disagree between processes and machines.
CLOCK_SKEW = timedelta(minutes=5)
CA_VALIDITY = timedelta(days=3650)
LEAF_VALIDITY = timedelta(days=365)
SYSTEM_MASTERS = "system:masters"
ADMIN_USER = "pilothouse-admin"

_SERVICE_ACCOUNT_KEY_BITS = 2048
_ALLOWED_MEMBER_COUNTS = (1, 3)
_API_SERVER_DNS_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
)
_DIR_MODE = 0o700
_KEY_MODE = 0o600
_FILE_MODE = 0o644


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def _public_key_der(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        encoding=serialization.Encoding.DER,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )


@dataclass(frozen=True)
class _CertifiedKey:
    """A certificate and its private key, as PEM on demand."""

    cert: x509.Certificate
    key: PrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return _key_pem(self.key)


@dataclass(frozen=True)
class CertificateAuthority(_CertifiedKey):
    """A CA certificate and the key that signs with it."""

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
        """Parse a CA from PEM; the key must match the certificate, which must be a CA."""
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise errors.InvalidInput(
                "the CA certificate or key is not valid unencrypted PEM",
                hint="pass the PEM files written by Pilothouse (ca.crt and ca.key)",
            ) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise errors.InvalidInput(
                f"the CA key is a {type(key).__name__}; only ECDSA and RSA keys are supported",
                hint="use an ECDSA or RSA CA key",
            )
        if _public_key_der(key) != cert.public_key().public_bytes(
            encoding=serialization.Encoding.DER,
            format=serialization.PublicFormat.SubjectPublicKeyInfo,
        ):
            raise errors.InvalidInput(
                "the CA key does not match the CA certificate",
                hint="pass the key that belongs to this certificate",
            )
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise errors.InvalidInput(
                "the certificate is not a CA certificate (BasicConstraints ca=True is missing)",
                hint="pass a CA certificate, not a leaf",
            )
        return cls(cert=cert, key=key)


@dataclass(frozen=True)
class IssuedCertificate(_CertifiedKey):
    """A leaf certificate and its private key."""


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")


def _require_positive(valid_for: timedelta) -> None:
    if valid_for <= timedelta(0):
        raise errors.InvalidInput(
            f"certificate validity must be positive, got {valid_for}",
            hint="pass a positive valid_for",
        )


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    if not common_name:
        raise errors.InvalidInput("a certificate needs a non-empty common name", hint="pass common_name")
    # Same attribute order as Go's pkix.Name: O before CN.
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _new_leaf_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def create_ca(common_name: str, *, now: datetime, valid_for: timedelta = CA_VALIDITY) -> CertificateAuthority:
    """Create a self-signed ECDSA P-256 CA valid from ``now - 5 min`` to ``now + valid_for``."""
    _require_aware(now)
    _require_positive(valid_for)
    key = _new_leaf_key()
    name = _name(common_name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
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
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(private_key=key, algorithm=hashes.SHA256())
    )
    return CertificateAuthority(cert=cert, key=key)


def _subject_alternative_names(
    dns_names: Sequence[str], ip_addresses: Sequence[str]
) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for dns in dict.fromkeys(dns_names):
        if not dns:
            raise errors.InvalidInput("a DNS subject alternative name is empty", hint="remove the empty name")
        try:
            names.append(x509.DNSName(dns))
        except ValueError as exc:
            raise errors.InvalidInput(
                f"{dns!r} is not a valid DNS name for a certificate",
                hint="use an ASCII (A-label) host name",
            ) from exc
    for ip in dict.fromkeys(ip_addresses):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError as exc:
            raise errors.InvalidInput(
                f"{ip!r} is not a valid IP address", hint="pass an IPv4 or IPv6 address"
            ) from exc
    return names


def _authority_key_identifier(ca: CertificateAuthority) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def issue_certificate(
    ca: CertificateAuthority,
    *,
    common_name: str,
    organizations: Sequence[str] = (),
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
    now: datetime,
    valid_for: timedelta = LEAF_VALIDITY,
) -> IssuedCertificate:
    """Issue an ECDSA P-256 leaf signed by ``ca``.

    ``server`` adds the ``serverAuth`` extended key usage, ``client`` adds
    ``clientAuth``; at least one is required. The certificate is valid from
    ``now - 5 min`` to ``now + valid_for``, cut short at the CA's own expiry.
    """
    _require_aware(now)
    _require_positive(valid_for)
    if not (server or client):
        raise errors.InvalidInput(
            f"certificate {common_name!r} would be usable neither as server nor as client",
            hint="pass server=True, client=True, or both",
        )
    if server and not (dns_names or ip_addresses):
        raise errors.InvalidInput(
            f"server certificate {common_name!r} has no DNS name or IP address",
            hint="TLS clients check subject alternative names; pass dns_names or ip_addresses",
        )
    subject = _name(common_name, organizations)
    sans = _subject_alternative_names(dns_names, ip_addresses)
    usages: list[x509.ObjectIdentifier] = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    key = _new_leaf_key()
    not_after = min(now + valid_for, ca.cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,  # ECDSA keys do no key transport
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_identifier(ca), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(private_key=ca.key, algorithm=hashes.SHA256())
    return IssuedCertificate(cert=cert, key=key)


@dataclass(frozen=True)
class ClusterPKIRequest:
    """What ``plan_cluster_pki`` needs to know about a local cluster."""

    cluster_name: str
    etcd_members: int  # 1 or 3
    apiserver_count: int  # 1 or 3; all API servers share one serving certificate
    service_cluster_ip: str = "10.96.0.1"  # first IP of the service range
    extra_sans: tuple[str, ...] = ()  # extra DNS names / IPs for the API server, e.g. HAProxy's address

    def __post_init__(self) -> None:
        if not self.cluster_name:
            raise errors.InvalidInput("the cluster name is empty", hint="name the cluster")
        if self.etcd_members not in _ALLOWED_MEMBER_COUNTS:
            raise errors.InvalidInput(
                f"etcd must have 1 or 3 members, got {self.etcd_members}",
                hint="use 1 for a dev cluster or 3 for high availability",
            )
        if self.apiserver_count not in _ALLOWED_MEMBER_COUNTS:
            raise errors.InvalidInput(
                f"a local cluster runs 1 or 3 API servers, got {self.apiserver_count}",
                hint="use 1 for a dev cluster or 3 for high availability",
            )
        try:
            ipaddress.ip_address(self.service_cluster_ip)
        except ValueError as exc:
            raise errors.InvalidInput(
                f"service_cluster_ip {self.service_cluster_ip!r} is not an IP address",
                hint="pass the first IP of the service range, e.g. 10.96.0.1",
            ) from exc


def _split_sans(entries: Sequence[str]) -> tuple[list[str], list[str]]:
    """Sort entries into (DNS names, IP addresses): an entry that parses as an IP is one."""
    dns_names: list[str] = []
    ips: list[str] = []
    for entry in entries:
        try:
            ips.append(str(ipaddress.ip_address(entry)))
        except ValueError:
            dns_names.append(entry)
    return dns_names, ips


def _put(files: dict[str, bytes], stem: str, material: CertificateAuthority | IssuedCertificate) -> None:
    files[f"{stem}.crt"] = material.cert_pem()
    files[f"{stem}.key"] = material.key_pem()


CA_FILES = {"ca": "cluster", "etcd/ca": "etcd", "front-proxy-ca": "front-proxy"}


def plan_cluster_pki(request: ClusterPKIRequest, *, now: datetime) -> dict[str, bytes]:
    """Generate the cluster's whole PKI; return relative file path -> PEM bytes.

    Pure: nothing is written (``write_pki`` does that). Paths:

    * ``ca``, ``etcd/ca``, ``front-proxy-ca`` — the three CAs (``.crt``/``.key``)
    * ``etcd/member-{i}`` — etcd serving and peer certificate per member
    * ``etcd/apiserver-client`` — kube-apiserver's client certificate for etcd
    * ``apiserver`` — serving certificate shared by every API server
    * ``apiserver-kubelet-client``, ``admin``, ``controller-manager``,
      ``scheduler``, ``kwok`` — client certificates from the cluster CA
    * ``front-proxy-client`` — aggregation-layer client certificate
    * ``sa.key`` / ``sa.pub`` — RSA service-account signing key pair
    """
    _require_aware(now)
    name = request.cluster_name
    authorities = {
        "ca": create_ca(f"{name}-ca", now=now),
        "etcd/ca": create_ca(f"{name}-etcd-ca", now=now),
        "front-proxy-ca": create_ca(f"{name}-front-proxy-ca", now=now),
    }
    files: dict[str, bytes] = {}
    for stem, ca in authorities.items():
        _put(files, stem, ca)
    files.update(plan_leaf_certificates(request, authorities, now=now))
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=_SERVICE_ACCOUNT_KEY_BITS)
    files["sa.key"] = _key_pem(sa_key)
    files["sa.pub"] = sa_key.public_key().public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    return files


def load_authorities(directory: Path) -> dict[str, CertificateAuthority]:
    """The cluster's three CAs from its PKI directory, keyed like ``CA_FILES``."""
    try:
        return {
            stem: CertificateAuthority.load(
                (directory / f"{stem}.crt").read_bytes(), (directory / f"{stem}.key").read_bytes()
            )
            for stem in CA_FILES
        }
    except FileNotFoundError as exc:
        raise errors.NotFound(
            f"the certificate authority {exc.filename} is missing",
            hint="the cluster's PKI is incomplete; restore it from a backup of the cluster directory",
        ) from None


def plan_leaf_certificates(
    request: ClusterPKIRequest, authorities: Mapping[str, CertificateAuthority], *, now: datetime
) -> dict[str, bytes]:
    """Every leaf certificate of the cluster, issued afresh from ``authorities`` (``CA_FILES``
    keys); the CAs and the service-account key are not part of it. Rotation writes this
    over the old leaves: clients keep trusting the same CAs, so old and new leaves work side
    by side while processes restart one at a time."""
    _require_aware(now)
    files: dict[str, bytes] = {}
    cluster_ca, etcd_ca, front_proxy_ca = (
        authorities["ca"],
        authorities["etcd/ca"],
        authorities["front-proxy-ca"],
    )
    for i in range(request.etcd_members):
        member = issue_certificate(
            etcd_ca,
            common_name=f"etcd-{i}",
            dns_names=("localhost", f"etcd-{i}"),
            ip_addresses=("127.0.0.1",),
            server=True,
            client=True,
            now=now,
        )
        _put(files, f"etcd/member-{i}", member)
    _put(
        files,
        "etcd/apiserver-client",
        issue_certificate(etcd_ca, common_name="kube-apiserver-etcd-client", client=True, now=now),
    )

    extra_dns, extra_ips = _split_sans(request.extra_sans)
    _put(
        files,
        "apiserver",
        issue_certificate(
            cluster_ca,
            common_name="kube-apiserver",
            dns_names=(*_API_SERVER_DNS_NAMES, *extra_dns),
            ip_addresses=("127.0.0.1", request.service_cluster_ip, *extra_ips),
            server=True,
            now=now,
        ),
    )

    clients: tuple[tuple[str, str, tuple[str, ...]], ...] = (
        ("apiserver-kubelet-client", "kube-apiserver-kubelet-client", (SYSTEM_MASTERS,)),
        ("admin", ADMIN_USER, (SYSTEM_MASTERS,)),
        ("controller-manager", "system:kube-controller-manager", ()),
        ("scheduler", "system:kube-scheduler", ()),
        # kwok's controller patches node and pod status for every node it fakes.
        ("kwok", "system:kwok-controller", (SYSTEM_MASTERS,)),
    )
    for stem, common_name, organizations in clients:
        issued = issue_certificate(
            cluster_ca, common_name=common_name, organizations=organizations, client=True, now=now
        )
        _put(files, stem, issued)
    _put(
        files,
        "front-proxy-client",
        issue_certificate(front_proxy_ca, common_name="front-proxy-client", client=True, now=now),
    )
    return files


def _checked_relative(relative: str) -> PurePosixPath:
    path = PurePosixPath(relative)
    if not relative or path.is_absolute() or ".." in path.parts:
        raise errors.InvalidInput(
            f"PKI file path {relative!r} must be relative and stay inside the PKI directory",
            hint="use the paths returned by plan_cluster_pki",
        )
    return path


def write_pki(files: Mapping[str, bytes], directory: Path) -> None:
    """Write ``files`` under ``directory``: directories 0700, ``*.key`` 0600, others 0644.

    Each file is written to a temporary sibling and renamed into place, so a
    reader never sees half a certificate.
    """
    checked = {_checked_relative(relative): content for relative, content in files.items()}
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(_DIR_MODE)
    for relative, content in checked.items():
        target = directory.joinpath(*relative.parts)
        parent = directory
        for part in relative.parts[:-1]:
            parent = parent / part
            parent.mkdir(exist_ok=True)
            parent.chmod(_DIR_MODE)
        mode = _KEY_MODE if relative.suffix == ".key" else _FILE_MODE
        write_atomically(target, content, mode=mode)


@dataclass(frozen=True)
class CertificateInfo:
    """What a certificate file says about its validity."""

    not_before: datetime
    not_after: datetime
    is_ca: bool


def read_certificates(directory: Path) -> dict[str, CertificateInfo]:
    """Map each ``*.crt`` under ``directory`` (relative POSIX path) to its validity, in UTC."""
    if not directory.is_dir():
        raise errors.NotFound(
            f"PKI directory {directory} does not exist",
            hint="the cluster's certificates were never written or were removed",
        )
    found: dict[str, CertificateInfo] = {}
    for path in sorted(directory.rglob("*.crt")):
        relative = path.relative_to(directory).as_posix()
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except ValueError as exc:
            raise errors.InvalidInput(
                f"{path} is not a PEM certificate",
                hint="restore it or regenerate the cluster's PKI",
            ) from exc
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        found[relative] = CertificateInfo(cert.not_valid_before_utc, cert.not_valid_after_utc, is_ca)
    return found


def certificate_expiries(directory: Path) -> dict[str, datetime]:
    """Map each ``*.crt`` under ``directory`` (relative POSIX path) to its notAfter in UTC."""
    return {path: info.not_after for path, info in read_certificates(directory).items()}


def kubeconfig_for(
    *,
    cluster_name: str,
    server: str,
    ca_pem: bytes,
    client: IssuedCertificate | tuple[bytes, bytes],
    user: str,
) -> dict[str, object]:
    """Build a kubeconfig (as a plain dict) with embedded CA and client credentials.

    ``client`` is an issued certificate or a ``(cert_pem, key_pem)`` pair. The
    cluster and context are named ``cluster_name``, the user entry ``user``.
    """
    if isinstance(client, IssuedCertificate):
        cert_pem, key_pem = client.cert_pem(), client.key_pem()
    else:
        cert_pem, key_pem = client

    def encode(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_name,
                "cluster": {"server": server, "certificate-authority-data": encode(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": encode(cert_pem),
                    "client-key-data": encode(key_pem),
                },
            }
        ],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": cluster_name,
        "preferences": {},
    }
