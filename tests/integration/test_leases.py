"""Cluster leases against the real store and the real shared cluster."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import psutil
import pytest

from pilothouse import errors
from pilothouse.fleet.leases import Holder, holder_is_dead
from pilothouse.platform import Platform
from pilothouse.store.clusters import ClusterRecord
from tests.conftest import SHARED_CLUSTER


def _live_other_holder() -> str:
    """A holder that is alive (this test process) but is not the registry's own identity."""
    me = Holder.of_this_process()
    return str(Holder(host=me.host, pid=me.pid, started=me.started, nonce="otherone"))


def _dead_holder() -> str:
    finished = subprocess.run(["true"], check=True)
    assert finished.returncode == 0
    process = psutil.Process()
    return str(
        Holder(host=Holder.of_this_process().host, pid=2**22 - 7, started=process.create_time(), nonce="gone")
    )


async def test_a_live_lease_held_elsewhere_blocks_operations_and_reconciliation(
    platform: Platform, shared_cluster: ClusterRecord
) -> None:
    store = platform.clusters.store
    other = _live_other_holder()
    assert store.acquire_lease(SHARED_CLUSTER, other, now=platform.now(), ttl=timedelta(minutes=5))
    try:
        assert platform.clusters.leases.busy(store.get(SHARED_CLUSTER), platform.now())
        with pytest.raises(errors.Conflict, match="busy"):
            await platform.clusters.stop(SHARED_CLUSTER)
        assert all(platform.clusters.view(SHARED_CLUSTER).processes.values()), "nothing was stopped"
        assert await platform.clusters.reconcile_local() == []
        # The same store refuses a second holder while the lease is live…
        assert not store.acquire_lease(
            SHARED_CLUSTER, "someone|1|0|x", now=platform.now(), ttl=timedelta(seconds=5)
        )
        # …and grants it once the lease has expired.
        later = platform.now() + timedelta(minutes=10)
        assert store.acquire_lease(SHARED_CLUSTER, "someone|1|0|x", now=later, ttl=timedelta(seconds=5))
    finally:
        store.release_lease(SHARED_CLUSTER, other)
        store.release_lease(SHARED_CLUSTER, "someone|1|0|x")
    assert store.get(SHARED_CLUSTER).lease_holder is None


def test_dead_holders_are_recognised_only_on_this_host() -> None:
    assert holder_is_dead(_dead_holder())
    assert not holder_is_dead(_live_other_holder())
    assert not holder_is_dead("another-host|1|0.0|x"), "a holder elsewhere is trusted until its lease expires"
    assert not holder_is_dead("garbage")


async def test_a_dead_holders_lease_is_taken_over(platform: Platform, shared_cluster: ClusterRecord) -> None:
    store = platform.clusters.store
    dead = _dead_holder()
    assert store.acquire_lease(SHARED_CLUSTER, dead, now=platform.now(), ttl=timedelta(minutes=5))
    assert not platform.clusters.leases.busy(store.get(SHARED_CLUSTER), platform.now())
    async with platform.clusters.leases.hold(SHARED_CLUSTER):
        assert store.get(SHARED_CLUSTER).lease_holder == platform.clusters.leases.holder
    assert store.get(SHARED_CLUSTER).lease_holder is None


async def test_one_operation_at_a_time_within_one_process(
    platform: Platform, shared_cluster: ClusterRecord
) -> None:
    leases = platform.clusters.leases
    async with leases.hold(SHARED_CLUSTER):
        assert leases.busy(platform.clusters.store.get(SHARED_CLUSTER), platform.now())
        assert await platform.clusters.reconcile_local() == [], "the reconciler keeps off a cluster in work"
        with pytest.raises(errors.Conflict, match="busy"):
            async with leases.hold(SHARED_CLUSTER):
                pytest.fail("a second operation must not start")
    assert not leases.busy(platform.clusters.store.get(SHARED_CLUSTER), platform.now())
