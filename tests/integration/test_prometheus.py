"""``/metrics`` scraped by a real Prometheus (Debian's ``/usr/bin/prometheus``), queried with PromQL.

The API server runs under uvicorn on its own event loop in a thread. The inventory's
watches must live on that loop (a scrape snapshots their caches; the server's lifespan
stops them on exit), so the shared cluster is watched through a ``background`` start
of the app rather than from the test's loop. Prometheus scrapes every second with a
viewer token; the test creates a Deployment on the shared cluster, scales it, and
waits for PromQL to report the new ready count.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from lightkube import AsyncClient
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import Container, PodSpec, PodTemplateSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace
from lightkube.types import PatchType

from pilothouse.api.app import create_app
from pilothouse.kube import client as kube_client
from pilothouse.platform import Platform
from pilothouse.store.clusters import ClusterRecord
from tests.conftest import SHARED_CLUSTER, SHARED_NODES
from tests.integration.api_server import free_port, serving
from tests.integration.kube_helpers import eventually

PROMETHEUS = "/usr/bin/prometheus"
NAMESPACE = "metrics-e2e"
DEPLOYMENT = "web"
SCALE_DEADLINE_SECONDS = 15.0


def _deployment(replicas: int) -> Deployment:
    labels: dict[str, Any] = {"app": DEPLOYMENT}
    return Deployment(
        metadata=ObjectMeta(name=DEPLOYMENT, namespace=NAMESPACE),
        spec=DeploymentSpec(
            replicas=replicas,
            selector=LabelSelector(matchLabels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels),
                spec=PodSpec(containers=[Container(name="app", image="registry.example/app:1.0")]),
            ),
        ),
    )


def _app(platform: Platform) -> FastAPI:
    async def watch_shared() -> None:
        await platform.inventory.ensure(SHARED_CLUSTER)

    return create_app(platform, reconcile=False, background=[watch_shared])


@pytest.fixture(scope="module")
def api(platform: Platform, shared_cluster: ClusterRecord) -> Iterator[tuple[str, str]]:
    """The API server's base URL and a viewer token, with the shared cluster probed and watched."""
    token, _ = platform.tokens.issue("prometheus-scraper", ("viewer",))
    with serving(_app(platform)) as url:
        yield url, token


@contextlib.contextmanager
def prometheus(workdir: Path, *, target: str, token: str) -> Iterator[str]:
    """A real Prometheus scraping ``target``'s ``/metrics`` every second; yields its base URL."""
    workdir.mkdir(mode=0o700)
    token_file = workdir / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "pilothouse",
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "metrics_path": "/metrics",
                "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
                "static_configs": [{"targets": [target]}],
            }
        ],
    }
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()
        if process.returncode not in (0, -15):
            print((workdir / "prometheus.log").read_text()[-4000:])


async def _target_health(http: httpx.AsyncClient) -> tuple[str, str]:
    """(health, last error) of the one scrape target; ("unknown", ...) before Prometheus answers."""
    try:
        response = await http.get("/api/v1/targets")
    except httpx.TransportError as exc:
        return "unknown", f"Prometheus not answering: {exc}"
    if response.status_code != 200:  # 503 "Service Unavailable" until its TSDB is open
        return "unknown", f"Prometheus not ready: HTTP {response.status_code}"
    active = response.json()["data"]["activeTargets"]
    if not active:
        return "unknown", "no target yet"
    return active[0]["health"], active[0]["lastError"]


async def _query(http: httpx.AsyncClient, promql: str) -> list[float]:
    """The values of an instant PromQL query's vector (empty when it has no series)."""
    response = await http.get("/api/v1/query", params={"query": promql})
    body = response.json()
    assert body["status"] == "success", body
    return [float(item["value"][1]) for item in body["data"]["result"]]


@pytest.fixture
async def shared_client(platform: Platform, shared_cluster: ClusterRecord) -> AsyncIterator[AsyncClient]:
    async with kube_client.open_client(platform.clusters.credentials(SHARED_CLUSTER)) as client:
        yield client


async def test_prometheus_scrapes_fleet_metrics_and_follows_a_scale(
    platform: Platform, api: tuple[str, str], shared_client: AsyncClient, tmp_path: Path
) -> None:
    url, token = api
    await platform.health.probe_once()
    await eventually(lambda: _synced(platform), bool, timeout=60)
    with_header = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, trust_env=False) as http:
        denied = await http.get("/metrics")
        assert denied.status_code == 401
        direct = await http.get("/metrics", headers=with_header)
        assert direct.status_code == 200, direct.text
        assert direct.headers["content-type"].startswith("text/plain; version=")
        assert f'pilothouse_cluster_up{{cluster="{SHARED_CLUSTER}"}} 1.0' in direct.text

    target = url.removeprefix("http://")
    with prometheus(tmp_path / "prometheus", target=target, token=token) as prom:
        async with httpx.AsyncClient(base_url=prom, trust_env=False, timeout=10) as http:
            started = time.monotonic()
            health, error = await eventually(
                lambda: _target_health(http), lambda h: h[0] == "up", timeout=60, interval=0.5
            )
            print(
                f"\nPrometheus target up {time.monotonic() - started:.1f}s after start ({health}, {error!r})"
            )

            up = await _query(http, f'pilothouse_cluster_up{{cluster="{SHARED_CLUSTER}"}}')
            assert up == [1.0]
            ready = await _query(
                http, f'pilothouse_cluster_nodes{{cluster="{SHARED_CLUSTER}",state="ready"}}'
            )
            assert ready == [float(SHARED_NODES)]
            assert await _query(http, 'pilothouse_build_info{job="pilothouse"}') == [1.0]
            assert await _query(http, 'process_resident_memory_bytes{job="pilothouse"} > 0')

            replicas = (
                f'pilothouse_workload_replicas{{cluster="{SHARED_CLUSTER}",namespace="{NAMESPACE}",'
                f'kind="Deployment",name="{DEPLOYMENT}",state="ready"}}'
            )
            await shared_client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
            try:
                await shared_client.create(_deployment(2))
                await eventually(lambda: _query(http, replicas), lambda v: v == [2.0], timeout=60)

                scaled = time.monotonic()
                await shared_client.patch(
                    Deployment,
                    DEPLOYMENT,
                    {"spec": {"replicas": 5}},
                    namespace=NAMESPACE,
                    patch_type=PatchType.MERGE,
                )
                await eventually(
                    lambda: _query(http, replicas),
                    lambda v: v == [5.0],
                    timeout=SCALE_DEADLINE_SECONDS,
                    interval=0.25,
                )
                print(f"PromQL saw 5 ready replicas {time.monotonic() - scaled:.1f}s after the scale")
                available = replicas.replace("pilothouse_workload_replicas", "pilothouse_workload_available")
                available = available.replace(',state="ready"', "")
                assert await _query(http, available) == [1.0]
            finally:
                await shared_client.delete(Namespace, NAMESPACE)


async def _synced(platform: Platform) -> bool:
    """Has every watch of the shared cluster listed once? The watches run on the server's
    loop (``wait_synced`` belongs to it), so this only reads their flags from here."""
    if SHARED_CLUSTER not in platform.inventory.names():
        return False
    inventory = platform.inventory.inventory(SHARED_CLUSTER)
    caches = inventory.caches()
    return all(caches[kind].synced for kind in inventory.watched)
