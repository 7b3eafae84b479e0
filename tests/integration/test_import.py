"""Importing clusters, against the real session cluster: the good path and every bad kubeconfig.

The imported cluster is the session's own local cluster, reached through its
admin kubeconfig (or a doctored copy of it). Failures are real: a closed port,
a CA that did not sign the server's certificate, a service-account token the
real API server rejects because it expired. Every failing import must leave
the stored clusters exactly as they were.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import http.server
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lightkube import ApiError
from lightkube.resources.core_v1 import Node, ServiceAccount

from pilothouse import errors
from pilothouse.fleet import requests
from pilothouse.fleet.registry import KUBECONFIG_SECRET
from pilothouse.kube import client as kube_client
from pilothouse.kube.credentials import ClusterCredentials, parse_kubeconfig
from pilothouse.platform import Platform
from pilothouse.providers.local import pki
from pilothouse.providers.local.provider import LocalRuntime
from pilothouse.store.clusters import ClusterRecord
from pilothouse.vocabulary import ClusterPhase, ProviderKind
from tests.conftest import SHARED_CLUSTER, SHARED_NODES
from tests.integration.kube_helpers import eventually

PILOTHOUSE = Path(sys.executable).with_name("pilothouse")
ISSUER = "https://kubernetes.default.svc.cluster.local"


# ----- helpers ---------------------------------------------------------------------------------


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PILOTHOUSE), *args],
        env={**os.environ, **env, "COLUMNS": "250", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_cli, env, *args)


def shared_creds(platform: Platform) -> ClusterCredentials:
    return platform.clusters.credentials(SHARED_CLUSTER)


def shared_runtime(platform: Platform) -> LocalRuntime:
    return LocalRuntime.from_dict(platform.clusters.get(SHARED_CLUSTER).runtime)


def shared_pids(platform: Platform) -> dict[str, int]:
    view = platform.clusters.view(SHARED_CLUSTER)
    assert view.processes
    assert all(view.processes.values()), view.processes
    return {name: rec.pid for name, rec in LocalRuntime.from_dict(view.record.runtime).processes.items()}


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends: nothing listens


def import_request(name: str, creds: ClusterCredentials) -> requests.ImportCluster:
    return requests.parse(requests.ImportCluster, name=name, kubeconfig=creds.to_yaml(name))


@contextmanager
def nothing_stored(platform: Platform) -> Iterator[None]:
    """The stored clusters (names, records, the shared cluster's secret) are unchanged afterwards."""
    before = platform.clusters.clusters()
    secret = platform.clusters.store.get_secret(SHARED_CLUSTER, KUBECONFIG_SECRET)
    yield
    after = platform.clusters.clusters()
    assert len(after) == len(before)
    assert after == before
    assert platform.clusters.store.get_secret(SHARED_CLUSTER, KUBECONFIG_SECRET) == secret


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_service_account_token(key: rsa.RSAPrivateKey, claims: dict[str, Any]) -> str:
    """An RS256 JWT, keyed the way kube-apiserver keys its own (kid = sha256 of the public key DER)."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "RS256", "kid": _b64url(hashlib.sha256(der).digest())}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


async def default_service_account_uid(creds: ClusterCredentials) -> str:
    async with kube_client.open_client(creds) as client:

        async def read() -> ServiceAccount | None:
            try:
                return await client.get(ServiceAccount, "default", namespace="default")
            except ApiError as exc:
                if exc.status.code == 404:
                    return None  # the controller-manager has not created it yet
                raise

        account = await eventually(read, lambda sa: sa is not None, timeout=60)
    assert account is not None
    assert account.metadata is not None
    assert account.metadata.uid
    return account.metadata.uid


def service_account_token(platform: Platform, uid: str, *, issued: datetime, lifetime: timedelta) -> str:
    key = serialization.load_pem_private_key(
        (shared_runtime(platform).layout.pki / "sa.key").read_bytes(), None
    )
    assert isinstance(key, rsa.RSAPrivateKey)
    claims = {
        "iss": ISSUER,
        "aud": [ISSUER],
        "sub": "system:serviceaccount:default:default",
        "iat": int(issued.timestamp()),
        "nbf": int(issued.timestamp()),
        "exp": int((issued + lifetime).timestamp()),
        "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "default", "uid": uid}},
    }
    return sign_service_account_token(key, claims)


@pytest.fixture
async def forget(platform: Platform) -> AsyncIterator[list[str]]:
    """Names of clusters a test imports; whatever is still stored is deleted afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        if platform.clusters.store.find(name) is not None:
            await platform.clusters.delete(name)


# ----- the good path ---------------------------------------------------------------------------


async def test_import_the_local_clusters_kubeconfig(
    platform: Platform, shared_cluster: ClusterRecord, tmp_path: Path, forget: list[str]
) -> None:
    path = tmp_path / "shared.kubeconfig"
    path.write_text(platform.clusters.kubeconfig(SHARED_CLUSTER))
    pids = shared_pids(platform)
    count = len(platform.clusters.clusters())
    name = "imported-shared"
    forget.append(name)

    request = requests.parse(requests.ImportCluster, name=name, kubeconfig=path.read_text())
    record = await platform.clusters.import_cluster(request, source=str(path), base_dir=path.parent)

    assert record.provider == ProviderKind.IMPORT
    assert record.provider == "import"
    assert record.kubernetes_version == "1.36.3"
    assert record.runtime == {"nodes": SHARED_NODES}
    assert record.phase == ClusterPhase.RUNNING
    assert record.server_url == shared_cluster.server_url
    assert record.secret_names == (KUBECONFIG_SECRET,)
    stored = platform.clusters.get(name)
    assert (stored.id, stored.provider, stored.kubernetes_version, stored.server_url, stored.runtime) == (
        record.id,
        "import",
        "1.36.3",
        shared_cluster.server_url,
        {"nodes": SHARED_NODES},
    )
    assert len(platform.clusters.clusters()) == count + 1
    assert platform.clusters.view(name).processes == {}  # Pilothouse runs nothing for it

    creds = platform.clusters.credentials(name)
    assert creds.server == shared_cluster.server_url
    assert creds.client_key_pem == shared_creds(platform).client_key_pem
    version = await kube_client.get_json(creds, "/version")
    assert version["gitVersion"] == "v1.36.3"
    async with kube_client.open_client(creds) as client:
        assert len([n async for n in client.list(Node)]) == SHARED_NODES

    # The name is now taken: a second import is refused and changes nothing.
    with nothing_stored(platform), pytest.raises(errors.AlreadyExists) as exc:
        await platform.clusters.import_cluster(request)
    assert repr(name) in exc.value.message

    await platform.clusters.delete(name)
    assert platform.clusters.store.find(name) is None
    assert len(platform.clusters.clusters()) == count
    # Deleting the imported record must not touch the cluster it pointed at.
    assert shared_pids(platform) == pids
    assert (await kube_client.probe(shared_creds(platform))).node_count == SHARED_NODES


async def test_import_through_the_cli(
    platform: Platform,
    shared_cluster: ClusterRecord,
    pilothouse_env: dict[str, str],
    tmp_path: Path,
    forget: list[str],
) -> None:
    # A kubeconfig with file references next to it, as kubeadm and kind write them.
    pki_dir = shared_runtime(platform).layout.pki
    (tmp_path / "certs").mkdir()
    for source, target in (("ca.crt", "ca.crt"), ("admin.crt", "client.crt"), ("admin.key", "client.key")):
        (tmp_path / "certs" / target).write_bytes((pki_dir / source).read_bytes())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "dead", "cluster": {"server": f"https://127.0.0.1:{closed_port()}"}},
            {
                "name": "live",
                "cluster": {"server": shared_cluster.server_url, "certificate-authority": "certs/ca.crt"},
            },
        ],
        "users": [
            {
                "name": "admin",
                "user": {"client-certificate": "certs/client.crt", "client-key": "certs/client.key"},
            }
        ],
        "contexts": [
            {"name": "dead", "context": {"cluster": "dead", "user": "admin"}},
            {"name": "live", "context": {"cluster": "live", "user": "admin"}},
        ],
        "current-context": "dead",
    }
    path = tmp_path / "kubeconfig.yaml"
    path.write_text(yaml.safe_dump(config))
    name = "cli-imported"
    forget.append(name)

    result = await cli(
        pilothouse_env, "cluster", "import", name, "--kubeconfig", str(path), "--context", "live"
    )

    assert result.returncode == 0, result.stderr
    assert f"imported {name}: Kubernetes v1.36.3, {SHARED_NODES} nodes" in result.stdout
    record = platform.clusters.get(name)
    assert record.provider == "import"
    assert record.server_url == shared_cluster.server_url  # the --context one, not current-context
    assert record.spec["context"] == "live"

    listing = await cli(pilothouse_env, "cluster", "list")
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if f" {name} " in line)
    assert " import " in row
    assert " 1.36.3 " in row
    assert f" {SHARED_NODES} " in row

    out = tmp_path / "out" / "exported.kubeconfig"
    out.parent.mkdir()
    exported = await cli(pilothouse_env, "cluster", "kubeconfig", name, "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert exported.stdout == ""  # the credentials went to the file only
    creds = parse_kubeconfig(out.read_text(), source=str(out))
    assert creds.server == shared_cluster.server_url
    assert (await kube_client.probe(creds)).node_count == SHARED_NODES

    # The default (current) context points at a closed port: without --context it fails cleanly.
    failed = await cli(pilothouse_env, "cluster", "import", "cli-dead", "--kubeconfig", str(path))
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: cannot connect to https://127.0.0.1:")
    assert platform.clusters.store.find("cli-dead") is None

    pids = shared_pids(platform)
    deleted = await cli(pilothouse_env, "cluster", "delete", name, "-y")
    assert deleted.returncode == 0, deleted.stderr
    assert platform.clusters.store.find(name) is None
    assert shared_pids(platform) == pids


# ----- bad kubeconfigs -------------------------------------------------------------------------


async def test_unreachable_server(platform: Platform, shared_cluster: ClusterRecord) -> None:
    server = f"https://127.0.0.1:{closed_port()}"
    with nothing_stored(platform), pytest.raises(errors.ClusterUnreachable) as exc:
        await platform.clusters.import_cluster(
            import_request("unreachable", shared_creds(platform).with_server(server))
        )
    assert exc.value.message.startswith(f"cannot connect to {server}")
    assert "API server is running" in exc.value.hint
    assert platform.clusters.store.find("unreachable") is None


async def test_wrong_certificate_authority(platform: Platform, shared_cluster: ClusterRecord) -> None:
    stranger = pki.create_ca("some-other-cluster-ca", now=datetime.now(UTC))
    creds = dataclasses.replace(shared_creds(platform), ca_pem=stranger.cert_pem())
    with nothing_stored(platform), pytest.raises(errors.ClusterUnreachable) as exc:
        await platform.clusters.import_cluster(import_request("wrong-ca", creds))
    assert exc.value.message == (
        f"the server at {shared_cluster.server_url} presented a certificate not signed by the kubeconfig's CA"
    )
    assert "certificate-authority" in exc.value.hint
    assert exc.value.context == {"reason": "tls_verify_failed"}


async def test_certificate_authority_that_is_not_a_certificate(
    platform: Platform, shared_cluster: ClusterRecord
) -> None:
    creds = dataclasses.replace(shared_creds(platform), ca_pem=b"-----BEGIN CERTIFICATE-----\nnope\n")
    with nothing_stored(platform), pytest.raises(errors.KubeconfigInvalid) as exc:
        await platform.clusters.import_cluster(import_request("bad-ca-pem", creds))
    assert "not a valid PEM certificate" in exc.value.message


async def test_client_key_that_does_not_match_the_certificate(
    platform: Platform, shared_cluster: ClusterRecord
) -> None:
    other_key = (shared_runtime(platform).layout.pki / "scheduler.key").read_bytes()
    creds = dataclasses.replace(shared_creds(platform), client_key_pem=other_key)
    with nothing_stored(platform), pytest.raises(errors.KubeconfigInvalid) as exc:
        await platform.clusters.import_cluster(import_request("mismatched-key", creds))
    assert "do not match" in exc.value.message
    assert b"PRIVATE KEY" not in str(exc.value).encode()


async def test_expired_service_account_token(platform: Platform, shared_cluster: ClusterRecord) -> None:
    uid = await default_service_account_uid(shared_creds(platform))
    now = datetime.now(UTC)
    base = dataclasses.replace(shared_creds(platform), client_cert_pem=None, client_key_pem=None)

    # Control: the same token, still valid, authenticates (the default account may not list nodes).
    fresh = service_account_token(
        platform, uid, issued=now - timedelta(minutes=1), lifetime=timedelta(hours=1)
    )
    with nothing_stored(platform), pytest.raises(errors.Forbidden) as forbidden:
        await platform.clusters.import_cluster(
            import_request("fresh-token", dataclasses.replace(base, token=fresh))
        )
    assert "not allowed" in forbidden.value.message

    expired = service_account_token(
        platform, uid, issued=now - timedelta(hours=2), lifetime=timedelta(hours=1)
    )
    with nothing_stored(platform), pytest.raises(errors.Unauthenticated) as exc:
        await platform.clusters.import_cluster(
            import_request("expired-token", dataclasses.replace(base, token=expired))
        )
    assert (
        exc.value.message
        == f"the cluster at {shared_cluster.server_url} rejected the credentials (401 Unauthorized)"
    )
    assert "expired" in exc.value.hint
    assert expired not in str(exc.value)
    assert expired.split(".")[2] not in repr(exc.value.to_dict())


async def test_garbage_token(platform: Platform, shared_cluster: ClusterRecord) -> None:
    creds = dataclasses.replace(
        shared_creds(platform), client_cert_pem=None, client_key_pem=None, token="garbage-Zq9XvW2pL7mN4kR8"
    )
    with nothing_stored(platform), pytest.raises(errors.Unauthenticated) as exc:
        await platform.clusters.import_cluster(import_request("garbage-token", creds))
    assert "401" in exc.value.message
    assert "garbage-Zq9XvW2pL7mN4kR8" not in str(exc.value)


async def test_duplicate_of_the_local_cluster(platform: Platform, shared_cluster: ClusterRecord) -> None:
    before = platform.clusters.get(SHARED_CLUSTER)
    secret = platform.clusters.store.get_secret(SHARED_CLUSTER, KUBECONFIG_SECRET)
    pids = shared_pids(platform)
    with nothing_stored(platform), pytest.raises(errors.AlreadyExists) as exc:
        await platform.clusters.import_cluster(import_request(SHARED_CLUSTER, shared_creds(platform)))
    assert exc.value.message == "a cluster named 'shared' already exists"
    assert exc.value.hint
    after = platform.clusters.get(SHARED_CLUSTER)
    assert after == before
    assert (after.updated_at, after.server_url, after.provider) == (
        before.updated_at,
        before.server_url,
        "local",
    )
    assert platform.clusters.store.get_secret(SHARED_CLUSTER, KUBECONFIG_SECRET) == secret
    assert shared_pids(platform) == pids


async def test_malformed_kubeconfig_text(platform: Platform, shared_cluster: ClusterRecord) -> None:
    request = requests.parse(requests.ImportCluster, name="malformed", kubeconfig="clusters: [unclosed")
    with nothing_stored(platform), pytest.raises(errors.KubeconfigInvalid) as exc:
        await platform.clusters.import_cluster(request, source="pasted.yaml")
    assert exc.value.message == "kubeconfig pasted.yaml: is not valid YAML at line 1"


class _NotKubernetes(http.server.BaseHTTPRequestHandler):
    """A web server that is not an API server: what a kubeconfig with the wrong port often reaches."""

    def do_GET(self) -> None:
        body = b"<html>hello</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def web_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotKubernetes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


async def test_server_that_is_not_kubernetes(
    platform: Platform, shared_cluster: ClusterRecord, web_server: str
) -> None:
    creds = ClusterCredentials(server=web_server, context="web", token="whatever")
    with nothing_stored(platform), pytest.raises(errors.ClusterUnreachable) as exc:
        await platform.clusters.import_cluster(import_request("web-server", creds))
    assert (
        exc.value.message
        == f"{web_server}/version did not answer with JSON: it is not a Kubernetes API server"
    )
    assert "server URL" in exc.value.hint
