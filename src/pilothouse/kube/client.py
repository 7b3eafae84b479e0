"""Opening Kubernetes clients from stored credentials, and probing clusters.

lightkube's ``AsyncClient`` does the API work over httpx. The TLS context is
built here rather than by lightkube, because lightkube writes inline client
keys to temporary files: Pilothouse loads them through an anonymous memory
file (``memfd``), so a cluster's key never touches the disk. Transport and
HTTP failures are translated into Pilothouse errors at this boundary.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.resources.core_v1 import Node

from pilothouse import errors
from pilothouse.kube.credentials import ClusterCredentials
from pilothouse.vocabulary import FIELD_MANAGER


def _memfd_path(name: str, data: bytes) -> tuple[int, str]:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    return fd, f"/proc/self/fd/{fd}"


def ssl_context_for(creds: ClusterCredentials) -> ssl.SSLContext:
    """A client TLS context trusting the credentials' CA and presenting their certificate."""
    if creds.insecure_skip_tls_verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif creds.ca_pem:
        try:
            context = ssl.create_default_context(cadata=creds.ca_pem.decode())
        except (ssl.SSLError, ValueError, UnicodeDecodeError):
            raise errors.KubeconfigInvalid(
                "the certificate authority in the kubeconfig is not a valid PEM certificate",
                hint="check certificate-authority(-data)",
            ) from None
    else:
        context = ssl.create_default_context()
    if creds.client_cert_pem and creds.client_key_pem:
        cert_fd, cert_path = _memfd_path("client-cert", creds.client_cert_pem)
        key_fd, key_path = _memfd_path("client-key", creds.client_key_pem)
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError:
            raise errors.KubeconfigInvalid(
                "the client certificate or key in the kubeconfig is invalid or they do not match",
                hint="check client-certificate(-data) and client-key(-data)",
            ) from None
        finally:
            os.close(cert_fd)
            os.close(key_fd)
    return context


def _lightkube_config(creds: ClusterCredentials) -> KubeConfig:
    user: dict[str, Any] = {"token": creds.token} if creds.token else {}
    return KubeConfig.from_dict(
        {
            "clusters": [{"name": "c", "cluster": {"server": creds.server}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "ctx",
        }
    )


@asynccontextmanager
async def open_client(creds: ClusterCredentials, *, timeout: float = 10.0) -> AsyncIterator[AsyncClient]:
    """An ``AsyncClient`` for the cluster, closed on exit. Field manager: ``pilothouse``."""
    transport = httpx2.AsyncHTTPTransport(verify=ssl_context_for(creds))
    client = AsyncClient(
        config=_lightkube_config(creds),
        timeout=httpx2.Timeout(timeout),
        field_manager=FIELD_MANAGER,
        trust_env=False,
        transport=transport,
    )
    try:
        yield client
    finally:
        await client.aclose()


async def get_text(creds: ClusterCredentials, path: str, *, timeout: float = 10.0) -> str:
    """GET a non-resource path (``/metrics``, ``/readyz``) and return its body."""
    return (await _get(creds, path, timeout=timeout)).text


async def get_json(creds: ClusterCredentials, path: str, *, timeout: float = 10.0) -> Any:
    """GET a non-resource path (``/version``) and decode its JSON body."""
    response = await _get(creds, path, timeout=timeout)
    try:
        return response.json()
    except ValueError:
        raise errors.ClusterUnreachable(
            f"{creds.server}{path} did not answer with JSON: it is not a Kubernetes API server",
            hint="check the server URL (host and port) in the kubeconfig",
        ) from None


async def _get(creds: ClusterCredentials, path: str, *, timeout: float) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {creds.token}"} if creds.token else {}
    async with httpx2.AsyncClient(
        verify=ssl_context_for(creds), timeout=timeout, trust_env=False, headers=headers
    ) as http:
        response = await http.get(creds.server + path)
    if response.status_code == 401:
        raise errors.Unauthenticated(
            f"the cluster at {creds.server} rejected the credentials (401 Unauthorized)",
            hint="the token or certificate is expired, revoked or for another cluster; get fresh credentials",
        )
    if response.status_code != 200:
        raise errors.ClusterUnreachable(
            f"{creds.server}{path} answered {response.status_code}", hint="check the API server's health"
        )
    return response


def translate(exc: BaseException, creds: ClusterCredentials) -> errors.PilothouseError:
    """Map a transport or API failure to the Pilothouse error a user can act on."""
    server = creds.server
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:  # concurrent requests: the first failure
        exc = exc.exceptions[0]
    if isinstance(exc, errors.PilothouseError):
        return exc
    if isinstance(exc, ApiError):
        status = exc.status.code or 0
        if status == 401:
            return errors.Unauthenticated(
                f"the cluster at {server} rejected the credentials (401 Unauthorized)",
                hint="the token or certificate is expired, revoked or for another cluster; get fresh credentials",
            )
        if status == 403:
            return errors.Forbidden(
                f"the credentials are valid at {server} but not allowed to do this (403): {exc.status.message}",
                hint="use credentials bound to a role that can read nodes and version (e.g. cluster-admin)",
            )
        return errors.ClusterUnreachable(
            f"the cluster at {server} answered {status}: {(exc.status.message or '')[:256]}",
            hint="check the API server's health and logs",
        )
    if isinstance(exc, httpx2.ConnectError):
        cause = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in cause or "certificate verify failed" in cause:
            return errors.ClusterUnreachable(
                f"the server at {server} presented a certificate not signed by the kubeconfig's CA",
                hint="the kubeconfig's certificate-authority is wrong or belongs to another cluster",
                reason="tls_verify_failed",
            )
        return errors.ClusterUnreachable(
            f"cannot connect to {server}: {cause or 'connection failed'}",
            hint="check the server address and that the API server is running and reachable from here",
        )
    if isinstance(exc, httpx2.TimeoutException):
        return errors.ClusterUnreachable(
            f"the cluster at {server} did not answer in time", hint="check the network and API server load"
        )
    if isinstance(exc, httpx2.HTTPError | ssl.SSLError):
        return errors.ClusterUnreachable(
            f"talking to {server} failed: {type(exc).__name__}: {exc}",
            hint="check the server URL and TLS setup",
        )
    raise exc


@dataclass(frozen=True)
class ProbeResult:
    """What a connectivity check learned about a cluster."""

    server_version: str
    node_count: int


async def probe(creds: ClusterCredentials, *, timeout: float = 10.0) -> ProbeResult:
    """Check a cluster answers: read its version and count its nodes."""
    try:
        version = await get_json(creds, "/version", timeout=timeout)
        if not isinstance(version, dict) or not version.get("gitVersion"):
            raise errors.ClusterUnreachable(
                f"{creds.server}/version has no gitVersion: it is not a Kubernetes API server",
                hint="check the server URL (host and port) in the kubeconfig",
            )
        async with open_client(creds, timeout=timeout) as client:
            node_count = 0
            async for _node in client.list(Node, chunk_size=500):
                node_count += 1
        return ProbeResult(server_version=str(version.get("gitVersion", "")), node_count=node_count)
    except Exception as exc:
        raise translate(exc, creds) from None
