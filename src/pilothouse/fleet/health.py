"""Health probes: is each endpoint of each cluster answering, and is the cluster up.

Owns the probing (I/O); ``fleet/sla.py`` turns the recorded results into
availability and burn rates, and ``store/health.py`` keeps them. httpx does
the HTTP; asyncio runs every endpoint of every cluster concurrently, each
request under its own deadline (default 2 s), so a hung or unreachable
cluster costs the others nothing.

What is probed:

- a **local** cluster: every API server member separately
  (``https://<member host>:<apiserver port>/livez`` and ``/readyz``, TLS
  verified against the cluster CA in ``<root>/pki/ca.crt``), the HAProxy
  load balancer when HA, and each etcd member's ``/health`` on its plain-HTTP
  metrics port. The probes are anonymous: ``/livez`` and ``/readyz`` are open
  to ``system:public-info-viewer``.
- an **imported** cluster: its server URL's ``/livez`` and ``/readyz`` with its
  stored credentials (client certificate via ``kube.client.ssl_context_for``,
  bearer token in a header, never logged).

A cluster is **up** when its client endpoint (the load balancer of an HA
cluster, the single API server otherwise, the server URL of an imported one)
answered ``/readyz`` with 200. Who calls: ``probe_fleet`` from the periodic
health pass, then ``record_results`` into the ``HealthStore``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import httpx
import structlog

from pilothouse import errors
from pilothouse.fleet.registry import ClusterRegistry
from pilothouse.kube import client as kube_client
from pilothouse.providers.local import topology
from pilothouse.providers.local.provider import LocalRuntime
from pilothouse.store.clusters import ClusterRecord
from pilothouse.store.health import HealthStore, NewSample
from pilothouse.vocabulary import ClusterPhase, DesiredState, ProviderKind

log = structlog.get_logger(__name__)

DEFAULT_TIMEOUT = 2.0
_ERROR_LIMIT = 200  # characters of an error kept (bodies from foreign servers are cut)

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class EndpointKind(StrEnum):
    APISERVER = "apiserver"
    LOADBALANCER = "loadbalancer"
    ETCD = "etcd"

    @property
    def paths(self) -> tuple[str, ...]:
        """The paths that must all answer 200 (etcd: with ``{"health": "true"}``)."""
        return ("/health",) if self is EndpointKind.ETCD else ("/livez", "/readyz")


@dataclass(frozen=True)
class Endpoint:
    """One address to probe. ``client``: the endpoint whose ``/readyz`` decides ``up``."""

    name: str
    url: str
    kind: EndpointKind
    client: bool = False


@dataclass(frozen=True)
class EndpointHealth:
    """One endpoint's answer. ``latency_ms`` is the time its checks took, failed or not."""

    name: str
    url: str
    kind: EndpointKind
    ok: bool
    latency_ms: float
    error: str | None = None


@dataclass(frozen=True)
class ClusterHealth:
    """One probe of a cluster. ``endpoints`` lists the client endpoint first."""

    cluster: str
    checked_at: datetime
    endpoints: tuple[EndpointHealth, ...]
    up: bool

    @property
    def failing(self) -> tuple[str, ...]:
        """Names of the endpoints that did not answer properly."""
        return tuple(e.name for e in self.endpoints if not e.ok)

    @property
    def client_latency_ms(self) -> float | None:
        """Latency of the client endpoint (the first endpoint); ``None`` without endpoints."""
        return self.endpoints[0].latency_ms if self.endpoints else None


# ----- which endpoints -------------------------------------------------------------------------


def plan_local_endpoints(runtime: LocalRuntime, control_planes: int) -> tuple[Endpoint, ...]:
    """Client endpoint first, then every API server member, then every etcd member."""
    ports = runtime.ports
    apiservers = [
        Endpoint(
            f"kube-apiserver-{i}",
            f"https://{topology.member_host(i, control_planes)}:{ports.apiserver}",
            EndpointKind.APISERVER,
            client=ports.load_balancer is None and i == 0,
        )
        for i in range(control_planes)
    ]
    balancer = (
        [
            Endpoint(
                "haproxy", f"https://127.0.0.1:{ports.load_balancer}", EndpointKind.LOADBALANCER, client=True
            )
        ]
        if ports.load_balancer is not None
        else []
    )
    etcd = [
        Endpoint(f"etcd-{i}", f"http://127.0.0.1:{port}", EndpointKind.ETCD)
        for i, port in enumerate(ports.etcd_metrics)
    ]
    return (*balancer, *apiservers, *etcd)


def plan_imported_endpoints(server_url: str) -> tuple[Endpoint, ...]:
    return (Endpoint("kube-apiserver", server_url.rstrip("/"), EndpointKind.APISERVER, client=True),)


def should_probe(record: ClusterRecord) -> bool:
    """Clusters meant to run: a stopped or deleting cluster's silence is not downtime."""
    return record.desired_state == DesiredState.RUNNING and record.phase != ClusterPhase.DELETING


# ----- probing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    path: str
    ok: bool
    error: str | None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _ERROR_LIMIT else text[: _ERROR_LIMIT - 1] + "…"


def _failed_checks(body: str) -> str:
    """The ``[-]name failed`` lines of a /livez or /readyz body, which say what is wrong."""
    lines = [line.strip() for line in body.splitlines() if line.startswith("[-]")]
    return "; ".join(lines)


async def _check(
    http: httpx.AsyncClient, endpoint: Endpoint, path: str, *, timeout: float, extensions: Mapping[str, str]
) -> _Check:
    try:
        async with asyncio.timeout(timeout):
            response = await http.get(endpoint.url + path, extensions=dict(extensions))
    except TimeoutError:
        return _Check(path, False, f"{path}: no answer within {timeout:g}s")
    except httpx.HTTPError as exc:
        return _Check(path, False, _short(f"{path}: {type(exc).__name__}: {exc}"))
    except ssl.SSLError as exc:
        return _Check(path, False, _short(f"{path}: TLS: {exc}"))
    if response.status_code != 200:
        detail = _failed_checks(response.text)
        return _Check(
            path, False, _short(f"{path}: HTTP {response.status_code}" + (f" {detail}" if detail else ""))
        )
    if endpoint.kind is EndpointKind.ETCD:
        try:
            healthy = json.loads(response.text).get("health") == "true"
        except (ValueError, AttributeError):
            healthy = False
        if not healthy:
            return _Check(path, False, _short(f"{path}: etcd reports unhealthy: {response.text}"))
    return _Check(path, True, None)


async def _probe_endpoint(
    http: httpx.AsyncClient, endpoint: Endpoint, *, timeout: float, extensions: Mapping[str, str]
) -> tuple[EndpointHealth, bool]:
    """The endpoint's health, and whether its ``/readyz`` (etcd: ``/health``) answered 200."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    checks = await asyncio.gather(
        *(
            _check(http, endpoint, path, timeout=timeout, extensions=extensions)
            for path in endpoint.kind.paths
        )
    )
    latency_ms = (loop.time() - started) * 1000.0
    problems = [c.error for c in checks if c.error]
    health = EndpointHealth(
        name=endpoint.name,
        url=endpoint.url,
        kind=endpoint.kind,
        ok=not problems,
        latency_ms=latency_ms,
        error="; ".join(problems) or None,
    )
    return health, checks[-1].ok


async def probe_endpoints(
    cluster: str,
    endpoints: Sequence[Endpoint],
    *,
    verify: ssl.SSLContext,
    headers: Mapping[str, str] | None = None,
    sni_hostname: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    clock: Clock = _utcnow,
) -> ClusterHealth:
    """Probe ``endpoints`` concurrently on fresh connections; ``up`` from the client endpoint.

    The result lists the client endpoint first, then the others in the given order.
    """
    checked_at = clock()
    extensions = {"sni_hostname": sni_hostname} if sni_hostname else {}
    async with httpx.AsyncClient(
        verify=verify, headers=dict(headers or {}), timeout=httpx.Timeout(timeout), trust_env=False
    ) as http:
        results = await asyncio.gather(
            *(_probe_endpoint(http, e, timeout=timeout, extensions=extensions) for e in endpoints)
        )
    paired = list(zip(endpoints, results, strict=True))
    up = any(ready for endpoint, (_health, ready) in paired if endpoint.client)
    ordered = [h for e, (h, _ready) in paired if e.client] + [h for e, (h, _ready) in paired if not e.client]
    health = ClusterHealth(cluster, checked_at, tuple(ordered), up)
    log.debug("health.probed", cluster=cluster, up=up, failing=list(health.failing))
    return health


def _unprobed(cluster: str, checked_at: datetime, url: str, problem: str) -> ClusterHealth:
    """A cluster that could not even be probed (no credentials, no CA): down, with the reason."""
    endpoint = EndpointHealth("kube-apiserver", url, EndpointKind.APISERVER, False, 0.0, _short(problem))
    return ClusterHealth(cluster, checked_at, (endpoint,), up=False)


def _ca_context(path: Path) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError):
        raise errors.NotFound(
            f"the cluster CA {path} is missing or unreadable", hint="the cluster's files are incomplete"
        ) from None


async def probe_cluster(
    registry: ClusterRegistry,
    record: ClusterRecord,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    clock: Clock = _utcnow,
) -> ClusterHealth:
    """Probe one cluster's endpoints. Never raises for an unhealthy or unreachable cluster."""
    checked_at = clock()
    try:
        if record.provider == ProviderKind.LOCAL:
            if not record.runtime:
                return _unprobed(
                    record.name, checked_at, record.server_url, "the cluster has no processes set up"
                )
            runtime = LocalRuntime.from_dict(record.runtime)
            endpoints = plan_local_endpoints(runtime, int(record.spec["control_planes"]))
            verify = await asyncio.to_thread(_ca_context, runtime.layout.pki / "ca.crt")
            return await probe_endpoints(
                record.name, endpoints, verify=verify, timeout=timeout, clock=lambda: checked_at
            )
        creds = await asyncio.to_thread(registry.credentials, record.name)
        verify = await asyncio.to_thread(kube_client.ssl_context_for, creds)
        headers = {"Authorization": f"Bearer {creds.token}"} if creds.token else {}
        return await probe_endpoints(
            record.name,
            plan_imported_endpoints(creds.server),
            verify=verify,
            headers=headers,
            sni_hostname=creds.tls_server_name,
            timeout=timeout,
            clock=lambda: checked_at,
        )
    except errors.PilothouseError as exc:
        log.warning("health.unprobed", cluster=record.name, error=exc.message)
        return _unprobed(record.name, checked_at, record.server_url, exc.message)


async def _probe_guarded(
    registry: ClusterRegistry, record: ClusterRecord, *, timeout: float, clock: Clock
) -> ClusterHealth:
    """``probe_cluster``, with an unexpected failure logged and reported as down, not raised:
    one bad record must not cost the other clusters their probe."""
    try:
        return await probe_cluster(registry, record, timeout=timeout, clock=clock)
    except Exception as exc:
        # No traceback: a rendered traceback can show frame locals, and one of them holds
        # the bearer header. The type and the cluster say where to look.
        log.error("health.probe_failed", cluster=record.name, error=type(exc).__name__)
        return _unprobed(record.name, clock(), record.server_url, f"probe failed: {type(exc).__name__}")


async def probe_fleet(
    registry: ClusterRegistry,
    *,
    records: Iterable[ClusterRecord] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    clock: Clock = _utcnow,
) -> list[ClusterHealth]:
    """Probe every cluster meant to run (or ``records``), all at once; results in record order."""
    chosen = list(records) if records is not None else await asyncio.to_thread(registry.clusters)
    targets = [r for r in chosen if should_probe(r)]
    results = await asyncio.gather(
        *(_probe_guarded(registry, r, timeout=timeout, clock=clock) for r in targets)
    )
    down = [h.cluster for h in results if not h.up]
    log.info("health.fleet_probed", clusters=len(results), down=down)
    return list(results)


def record_results(store: HealthStore, results: Iterable[ClusterHealth]) -> int:
    """Store each cluster's ``up`` and client-endpoint latency as a sample; return how many were new."""
    return store.record_many(
        NewSample(h.cluster, h.checked_at, h.up, h.client_latency_ms if h.up else None) for h in results
    )
