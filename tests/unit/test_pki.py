"""Tests for pilothouse.providers.local.pki: the local cluster's certificates and keys."""

from __future__ import annotations

import base64
import ipaddress
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pilothouse import errors
from pilothouse.providers.local import pki

T = TypeVar("T", bound=x509.ExtensionType)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
EXTRA_SANS = ("192.168.50.10", "api.pilothouse.test", "fd00::10")

#: leaf stem -> stem of the CA that signs it
CLUSTER_LEAVES = {
    "apiserver": "ca",
    "apiserver-kubelet-client": "ca",
    "admin": "ca",
    "controller-manager": "ca",
    "scheduler": "ca",
    "kwok": "ca",
    "etcd/apiserver-client": "etcd/ca",
    "front-proxy-client": "front-proxy-ca",
}
CA_STEMS = ("ca", "etcd/ca", "front-proxy-ca")

#: leaf stem -> (common name, organizations)
SUBJECTS = {
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ["system:masters"]),
    "admin": ("pilothouse-admin", ["system:masters"]),
    "controller-manager": ("system:kube-controller-manager", []),
    "scheduler": ("system:kube-scheduler", []),
    "kwok": ("system:kwok-controller", ["system:masters"]),
    "etcd/apiserver-client": ("kube-apiserver-etcd-client", []),
    "front-proxy-client": ("front-proxy-client", []),
}


def leaves_for(members: int) -> dict[str, str]:
    return {**CLUSTER_LEAVES, **{f"etcd/member-{i}": "etcd/ca" for i in range(members)}}


def cert(files: dict[str, bytes], stem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(files[f"{stem}.crt"])


def ext(certificate: x509.Certificate, kind: type[T]) -> T:
    return certificate.extensions.get_extension_for_class(kind).value


def dns_names(certificate: x509.Certificate) -> set[str]:
    return set(ext(certificate, x509.SubjectAlternativeName).get_values_for_type(x509.DNSName))


def ips(certificate: x509.Certificate) -> set[str]:
    values = ext(certificate, x509.SubjectAlternativeName).get_values_for_type(x509.IPAddress)
    return {str(ip) for ip in values}


def public_der(key: object) -> bytes:
    assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module", params=[(1, ()), (3, ()), (1, EXTRA_SANS), (3, EXTRA_SANS)], ids=str)
def planned(request: pytest.FixtureRequest) -> tuple[pki.ClusterPKIRequest, dict[str, bytes]]:
    members, extra = request.param
    pki_request = pki.ClusterPKIRequest(
        cluster_name="demo", etcd_members=members, apiserver_count=members, extra_sans=extra
    )
    return pki_request, pki.plan_cluster_pki(pki_request, now=NOW)


@pytest.fixture(scope="module")
def one_member() -> dict[str, bytes]:
    request = pki.ClusterPKIRequest(cluster_name="demo", etcd_members=1, apiserver_count=1)
    return pki.plan_cluster_pki(request, now=NOW)


# --- plan_cluster_pki ---------------------------------------------------------------------------


def test_plan_produces_exactly_the_expected_files(
    planned: tuple[pki.ClusterPKIRequest, dict[str, bytes]],
) -> None:
    request, files = planned
    stems = [*CA_STEMS, *leaves_for(request.etcd_members)]
    expected = {f"{stem}.{suffix}" for stem in stems for suffix in ("crt", "key")} | {"sa.key", "sa.pub"}
    assert set(files) == expected


def test_every_leaf_verifies_against_its_ca_and_no_other(
    planned: tuple[pki.ClusterPKIRequest, dict[str, bytes]],
) -> None:
    request, files = planned
    for leaf_stem, ca_stem in leaves_for(request.etcd_members).items():
        leaf = cert(files, leaf_stem)
        leaf.verify_directly_issued_by(cert(files, ca_stem))
        for other in CA_STEMS:
            if other != ca_stem:
                with pytest.raises(ValueError, match="issuer"):
                    leaf.verify_directly_issued_by(cert(files, other))


def test_cas_are_distinct_self_signed_cas(planned: tuple[pki.ClusterPKIRequest, dict[str, bytes]]) -> None:
    _, files = planned
    serials = set()
    for stem in CA_STEMS:
        ca = cert(files, stem)
        ca.verify_directly_issued_by(ca)
        assert ext(ca, x509.BasicConstraints).ca
        usage = ext(ca, x509.KeyUsage)
        assert usage.key_cert_sign
        assert usage.crl_sign
        assert (
            ext(ca, x509.AuthorityKeyIdentifier).key_identifier == ext(ca, x509.SubjectKeyIdentifier).digest
        )
        serials.add(ca.serial_number)
    assert len(serials) == len(CA_STEMS)


def test_leaves_are_not_cas_and_point_at_their_issuer(
    planned: tuple[pki.ClusterPKIRequest, dict[str, bytes]],
) -> None:
    request, files = planned
    for leaf_stem, ca_stem in leaves_for(request.etcd_members).items():
        leaf = cert(files, leaf_stem)
        assert not ext(leaf, x509.BasicConstraints).ca
        usage = ext(leaf, x509.KeyUsage)
        assert usage.digital_signature
        assert not usage.key_cert_sign
        ca_ski = ext(cert(files, ca_stem), x509.SubjectKeyIdentifier).digest
        assert ext(leaf, x509.AuthorityKeyIdentifier).key_identifier == ca_ski
        ski = x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())
        assert ext(leaf, x509.SubjectKeyIdentifier) == ski


def test_every_key_file_matches_its_certificate(
    planned: tuple[pki.ClusterPKIRequest, dict[str, bytes]],
) -> None:
    request, files = planned
    for stem in [*CA_STEMS, *leaves_for(request.etcd_members)]:
        key = serialization.load_pem_private_key(files[f"{stem}.key"], password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.curve.name == "secp256r1"
        assert public_der(key.public_key()) == public_der(cert(files, stem).public_key())


@pytest.mark.parametrize("members", [1, 3])
def test_etcd_member_sans(members: int) -> None:
    request = pki.ClusterPKIRequest(cluster_name="demo", etcd_members=members, apiserver_count=1)
    files = pki.plan_cluster_pki(request, now=NOW)
    for i in range(members):
        member = cert(files, f"etcd/member-{i}")
        assert dns_names(member) == {"localhost", f"etcd-{i}"}
        assert ips(member) == {"127.0.0.1"}
        assert list(ext(member, x509.ExtendedKeyUsage)) == [
            ExtendedKeyUsageOID.SERVER_AUTH,
            ExtendedKeyUsageOID.CLIENT_AUTH,
        ]
    assert f"etcd/member-{members}.crt" not in files


def test_apiserver_sans(planned: tuple[pki.ClusterPKIRequest, dict[str, bytes]]) -> None:
    request, files = planned
    apiserver = cert(files, "apiserver")
    expected_dns = {
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
    }
    expected_ips = {"127.0.0.1", "10.96.0.1"}
    if request.extra_sans:
        expected_dns.add("api.pilothouse.test")
        expected_ips |= {"192.168.50.10", "fd00::10"}
    assert dns_names(apiserver) == expected_dns
    assert ips(apiserver) == expected_ips
    assert list(ext(apiserver, x509.ExtendedKeyUsage)) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_service_cluster_ip_and_duplicate_sans() -> None:
    request = pki.ClusterPKIRequest(
        cluster_name="demo",
        etcd_members=1,
        apiserver_count=1,
        service_cluster_ip="10.43.0.1",
        extra_sans=("127.0.0.1", "localhost"),
    )
    apiserver = cert(pki.plan_cluster_pki(request, now=NOW), "apiserver")
    san = ext(apiserver, x509.SubjectAlternativeName)
    assert ips(apiserver) == {"127.0.0.1", "10.43.0.1"}
    assert len(san.get_values_for_type(x509.IPAddress)) == 2
    assert san.get_values_for_type(x509.DNSName).count("localhost") == 1


@pytest.mark.parametrize(("stem", "subject"), SUBJECTS.items())
def test_client_certificates(one_member: dict[str, bytes], stem: str, subject: tuple[str, list[str]]) -> None:
    common_name, organizations = subject
    client = cert(one_member, stem)
    assert [a.value for a in client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [common_name]
    assert [
        a.value for a in client.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    ] == organizations
    assert list(ext(client, x509.ExtendedKeyUsage)) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_service_account_key_pair(one_member: dict[str, bytes]) -> None:
    private = serialization.load_pem_private_key(one_member["sa.key"], password=None)
    public = serialization.load_pem_public_key(one_member["sa.pub"])
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 2048
    assert one_member["sa.key"].startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_der(public) == public_der(private.public_key())


def test_plan_validity_windows(one_member: dict[str, bytes]) -> None:
    for stem in CA_STEMS:
        assert cert(one_member, stem).not_valid_after_utc == NOW + timedelta(days=3650)
    for stem in leaves_for(1):
        leaf = cert(one_member, stem)
        assert leaf.not_valid_before_utc == NOW - timedelta(minutes=5)
        assert leaf.not_valid_after_utc == NOW + timedelta(days=365)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"etcd_members": 2, "apiserver_count": 1},
        {"etcd_members": 0, "apiserver_count": 1},
        {"etcd_members": 1, "apiserver_count": 2},
        {"etcd_members": 1, "apiserver_count": 1, "service_cluster_ip": "10.96.0.0/12"},
    ],
)
def test_invalid_requests_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(errors.InvalidInput):
        pki.ClusterPKIRequest(cluster_name="demo", **kwargs)  # type: ignore[arg-type]


def test_naive_now_is_rejected() -> None:
    request = pki.ClusterPKIRequest(cluster_name="demo", etcd_members=1, apiserver_count=1)
    with pytest.raises(ValueError, match="timezone-aware"):
        pki.plan_cluster_pki(request, now=NOW.replace(tzinfo=None))


# --- create_ca / issue_certificate --------------------------------------------------------------


def test_issue_honours_valid_for() -> None:
    ca = pki.create_ca("test-ca", now=NOW, valid_for=timedelta(days=100))
    issued = pki.issue_certificate(
        ca, common_name="short", client=True, now=NOW, valid_for=timedelta(days=30)
    )
    assert ca.cert.not_valid_after_utc == NOW + timedelta(days=100)
    assert issued.cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert issued.cert.not_valid_after_utc == NOW + timedelta(days=30)


def test_leaf_never_outlives_its_ca() -> None:
    ca = pki.create_ca("test-ca", now=NOW, valid_for=timedelta(days=10))
    issued = pki.issue_certificate(ca, common_name="long", client=True, now=NOW)
    assert issued.cert.not_valid_after_utc == NOW + timedelta(days=10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"server": True},
        {"client": True, "ip_addresses": ["not-an-ip"]},
        {"client": True, "dns_names": [""]},
        {"client": True, "valid_for": timedelta(0)},
        {"client": True, "common_name": ""},
    ],
)
def test_issue_rejects_bad_input(kwargs: dict[str, object]) -> None:
    ca = pki.create_ca("test-ca", now=NOW)
    arguments: dict[str, object] = {"common_name": "x", **kwargs}
    with pytest.raises(errors.InvalidInput):
        pki.issue_certificate(ca, now=NOW, **arguments)  # type: ignore[arg-type]


def test_ca_load_round_trips_and_still_signs() -> None:
    ca = pki.create_ca("test-ca", now=NOW)
    loaded = pki.CertificateAuthority.load(ca.cert_pem(), ca.key_pem())
    assert loaded.cert == ca.cert
    issued = pki.issue_certificate(loaded, common_name="x", client=True, now=NOW)
    issued.cert.verify_directly_issued_by(ca.cert)


def test_ca_load_rejects_mismatched_key_leaf_and_garbage() -> None:
    ca = pki.create_ca("test-ca", now=NOW)
    other = pki.create_ca("other-ca", now=NOW)
    leaf = pki.issue_certificate(ca, common_name="x", client=True, now=NOW)
    with pytest.raises(errors.InvalidInput, match="does not match"):
        pki.CertificateAuthority.load(ca.cert_pem(), other.key_pem())
    with pytest.raises(errors.InvalidInput, match="not a CA"):
        pki.CertificateAuthority.load(leaf.cert_pem(), leaf.key_pem())
    with pytest.raises(errors.InvalidInput, match="PEM"):
        pki.CertificateAuthority.load(b"garbage", ca.key_pem())


# --- real TLS handshakes (OpenSSL in memory, strict X.509 checks) -------------------------------


def _context(
    tmp_path: Path, files: dict[str, bytes], *, server: bool, ca: str, identity: str
) -> ssl.SSLContext:
    pki.write_pki(files, tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_verify_locations(cafile=tmp_path / f"{ca}.crt")
    context.load_cert_chain(tmp_path / f"{identity}.crt", tmp_path / f"{identity}.key")
    return context


def _handshake(client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, hostname: str) -> ssl.SSLObject:
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(client_in, client_out, server_hostname=hostname)
    server = server_ctx.wrap_bio(server_in, server_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, side, outgoing, incoming in (
            ("client", client, client_out, server_in),
            ("server", server, server_out, client_in),
        ):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            incoming.write(outgoing.read())
        if all(done.values()):
            return server
    raise AssertionError("handshake did not finish")


@pytest.mark.parametrize("hostname", ["kubernetes.default.svc", "localhost", "10.96.0.1", "127.0.0.1"])
def test_apiserver_mutual_tls(tmp_path: Path, one_member: dict[str, bytes], hostname: str) -> None:
    server_ctx = _context(tmp_path, one_member, server=True, ca="ca", identity="apiserver")
    client_ctx = _context(tmp_path, one_member, server=False, ca="ca", identity="admin")
    server = _handshake(client_ctx, server_ctx, hostname)
    peer = server.getpeercert()
    assert peer is not None
    assert ((("commonName", "pilothouse-admin"),)) in peer["subject"]


def test_etcd_member_serves_and_peers_with_itself(tmp_path: Path, one_member: dict[str, bytes]) -> None:
    server_ctx = _context(tmp_path, one_member, server=True, ca="etcd/ca", identity="etcd/member-0")
    client_ctx = _context(tmp_path, one_member, server=False, ca="etcd/ca", identity="etcd/member-0")
    peer = _handshake(client_ctx, server_ctx, "etcd-0").getpeercert()
    assert peer is not None
    assert ((("commonName", "etcd-0"),)) in peer["subject"]


def test_tls_rejects_wrong_hostname(tmp_path: Path, one_member: dict[str, bytes]) -> None:
    server_ctx = _context(tmp_path, one_member, server=True, ca="ca", identity="apiserver")
    client_ctx = _context(tmp_path, one_member, server=False, ca="ca", identity="admin")
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _handshake(client_ctx, server_ctx, "api.elsewhere.test")


def test_tls_rejects_server_cert_from_another_ca(tmp_path: Path, one_member: dict[str, bytes]) -> None:
    server_ctx = _context(tmp_path, one_member, server=True, ca="etcd/ca", identity="etcd/member-0")
    client_ctx = _context(tmp_path, one_member, server=False, ca="ca", identity="admin")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(client_ctx, server_ctx, "localhost")


def test_tls_rejects_serving_cert_used_as_client(tmp_path: Path, one_member: dict[str, bytes]) -> None:
    server_ctx = _context(tmp_path, one_member, server=True, ca="ca", identity="apiserver")
    client_ctx = _context(tmp_path, one_member, server=False, ca="ca", identity="apiserver")
    with pytest.raises(ssl.SSLError, match="unsuitable certificate purpose"):
        _handshake(client_ctx, server_ctx, "localhost")


# --- write_pki / certificate_expiries ------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_pki_modes_and_contents(tmp_path: Path, one_member: dict[str, bytes]) -> None:
    directory = tmp_path / "clusters" / "demo" / "pki"
    pki.write_pki(one_member, directory)
    assert mode(directory) == 0o700
    assert mode(directory / "etcd") == 0o700
    for relative, content in one_member.items():
        path = directory / relative
        assert path.read_bytes() == content
        assert mode(path) == (0o600 if relative.endswith(".key") else 0o644), relative
    written = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    assert written == set(one_member)


def test_write_pki_replaces_existing_files(tmp_path: Path) -> None:
    pki.write_pki({"etcd/a.key": b"old", "b.crt": b"old"}, tmp_path)
    (tmp_path / "b.crt").chmod(0o600)
    pki.write_pki({"etcd/a.key": b"new", "b.crt": b"new"}, tmp_path)
    assert (tmp_path / "etcd" / "a.key").read_bytes() == b"new"
    assert (tmp_path / "b.crt").read_bytes() == b"new"
    assert mode(tmp_path / "b.crt") == 0o644
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.key", "b.crt", "etcd"]


@pytest.mark.parametrize("relative", ["../escape.crt", "/etc/escape.crt", "etcd/../../escape.crt", ""])
def test_write_pki_refuses_paths_outside_the_directory(tmp_path: Path, relative: str) -> None:
    target = tmp_path / "pki"
    with pytest.raises(errors.InvalidInput):
        pki.write_pki({"ok.crt": b"x", relative: b"x"}, target)
    assert not target.exists()
    assert not (tmp_path / "escape.crt").exists()


def test_certificate_expiries(tmp_path: Path) -> None:
    request = pki.ClusterPKIRequest(cluster_name="demo", etcd_members=3, apiserver_count=3)
    files = pki.plan_cluster_pki(request, now=NOW)
    short = pki.issue_certificate(
        pki.CertificateAuthority.load(files["ca.crt"], files["ca.key"]),
        common_name="short",
        client=True,
        now=NOW,
        valid_for=timedelta(days=7),
    )
    files["short.crt"] = short.cert_pem()
    pki.write_pki(files, tmp_path)
    expiries = pki.certificate_expiries(tmp_path)
    assert set(expiries) == {name for name in files if name.endswith(".crt")}
    assert "etcd/member-2.crt" in expiries
    assert expiries["short.crt"] == NOW + timedelta(days=7)
    for stem in CA_STEMS:
        assert expiries[f"{stem}.crt"] == NOW + timedelta(days=3650)
    for stem in leaves_for(3):
        assert expiries[f"{stem}.crt"] == NOW + timedelta(days=365)
    assert all(expiry.tzinfo == UTC for expiry in expiries.values())


def test_certificate_expiries_errors(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound):
        pki.certificate_expiries(tmp_path / "missing")
    (tmp_path / "broken.crt").write_bytes(b"not a certificate")
    with pytest.raises(errors.InvalidInput, match=r"broken\.crt"):
        pki.certificate_expiries(tmp_path)


# --- kubeconfig_for -----------------------------------------------------------------------------


@pytest.mark.parametrize("as_pair", [False, True])
def test_kubeconfig_round_trips_through_yaml(as_pair: bool) -> None:
    ca = pki.create_ca("demo-ca", now=NOW)
    admin = pki.issue_certificate(
        ca, common_name="pilothouse-admin", organizations=["system:masters"], client=True, now=NOW
    )
    client: pki.IssuedCertificate | tuple[bytes, bytes] = (
        (admin.cert_pem(), admin.key_pem()) if as_pair else admin
    )
    config = pki.kubeconfig_for(
        cluster_name="demo",
        server="https://127.0.0.1:6443",
        ca_pem=ca.cert_pem(),
        client=client,
        user="pilothouse-admin",
    )
    loaded = yaml.safe_load(yaml.safe_dump(config))
    assert loaded == config
    assert loaded["apiVersion"] == "v1"
    assert loaded["kind"] == "Config"
    assert loaded["current-context"] == "demo"
    [cluster] = loaded["clusters"]
    [user] = loaded["users"]
    [context] = loaded["contexts"]
    assert cluster["name"] == "demo"
    assert cluster["cluster"]["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"], validate=True) == ca.cert_pem()
    assert user["name"] == "pilothouse-admin"
    assert base64.b64decode(user["user"]["client-certificate-data"], validate=True) == admin.cert_pem()
    assert base64.b64decode(user["user"]["client-key-data"], validate=True) == admin.key_pem()
    assert context == {"name": "demo", "context": {"cluster": "demo", "user": "pilothouse-admin"}}


def test_extra_sans_classification_uses_ip_parsing() -> None:
    # "1.2.3" is not a valid IP address for ipaddress, so it must land as a DNS name.
    request = pki.ClusterPKIRequest(
        cluster_name="demo", etcd_members=1, apiserver_count=1, extra_sans=("1.2.3", "::1")
    )
    apiserver = cert(pki.plan_cluster_pki(request, now=NOW), "apiserver")
    assert "1.2.3" in dns_names(apiserver)
    assert str(ipaddress.ip_address("::1")) in ips(apiserver)
