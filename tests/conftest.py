"""Shared test fixtures.

Integration tests run against real components: one session-wide local
cluster (real etcd, kube-apiserver, controller-manager, scheduler, kwok)
shared by every test that only reads or adds objects; tests that break,
stop or delete a cluster create their own and are marked ``own_cluster``.
The Kubernetes binaries come from the user's cache (installed by
``scripts/setup.sh`` / ``.ci/run``); a missing cache fails loudly, it never
skips.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from pilothouse import logs
from pilothouse.binaries.cache import BinaryCache
from pilothouse.fleet import requests
from pilothouse.platform import Platform
from pilothouse.settings import Settings, load_settings
from pilothouse.store.clusters import ClusterRecord

pytest_plugins = ["tests.integration.postgres"]

SHARED_CLUSTER = "shared"
SHARED_NODES = 20


@pytest.fixture(scope="session")
def test_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pilothouse-home")


@pytest.fixture(scope="session")
def pilothouse_env(test_home: Path) -> Iterator[dict[str, str]]:
    """Environment pointing Pilothouse at a private data/config dir and the real binary cache."""
    env = {
        "PILOTHOUSE_DATA_DIR": str(test_home / "data"),
        "PILOTHOUSE_CONFIG_DIR": str(test_home / "config"),
        "PILOTHOUSE_CONFIG": str(test_home / "config" / "config.yaml"),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def settings(pilothouse_env: dict[str, str]) -> Settings:
    logs.configure("WARNING")
    return load_settings()


@pytest.fixture(scope="session")
def installed_binaries(settings: Settings) -> BinaryCache:
    cache = BinaryCache(settings.binaries_dir)
    cache.require(settings.kubernetes_version)  # raises BinaryError with the install command
    return cache


@pytest.fixture(scope="session")
def platform(settings: Settings) -> Iterator[Platform]:
    platform = Platform.open(settings)
    yield platform
    platform.close()


@pytest.fixture(scope="session", autouse=True)
def no_leftover_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Safety net: whatever a failed test left running under this session's temp dirs is killed.

    Tests clean up after themselves; this only keeps one failure from leaking control-plane
    processes into the next run. It reports what it had to kill, so leaks stay visible.
    """
    yield
    base = str(tmp_path_factory.getbasetemp())
    leaked = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if base in cmdline and process.pid != os.getpid():
            leaked.append(process)
    for process in leaked:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(leaked, timeout=10)
    if leaked:
        print(f"\nkilled {len(leaked)} leftover processes: {[p.pid for p in leaked]}")


@pytest.fixture(scope="session")
async def shared_cluster(platform: Platform, installed_binaries: BinaryCache) -> AsyncIterator[ClusterRecord]:
    """A single-control-plane local cluster with 20 simulated nodes, for the whole session."""
    request = requests.parse(requests.CreateLocalCluster, name=SHARED_CLUSTER, nodes=SHARED_NODES)
    record = await platform.clusters.create_local(request)
    yield record
    if platform.clusters.store.find(SHARED_CLUSTER) is not None:
        await platform.clusters.delete(SHARED_CLUSTER)
