"""Benchmark: one Pilothouse process watching many local clusters, its CPU and memory.

``--clusters`` local clusters (1 control plane, ``--nodes`` kwok nodes and a
Deployment of ``--pods`` pods each) are created in a child process with the
project's local provider. Then this process runs the observability jobs of
``pilothouse up`` (``reconcile.loop.jobs_of``: inventory watches on nine kinds,
health probes, the change feed and alert evaluation, at their default
intervals) twice: watching 1 cluster (the baseline) and watching all of them.
Each phase starts the jobs from scratch, waits until every watched inventory
has synced plus ``--warmup`` seconds, then measures over ``--window`` seconds:

- process CPU time (user + system, all threads) → % of one core;
- RSS, sampled every ``--sample-interval`` seconds (median);

and afterwards, in a separate pass per phase with tracemalloc on (tracemalloc
slows allocation, so it is kept out of the CPU windows), the Python heap the
jobs hold once synced and warmed up. Per-cluster figures are the difference
between the two phases divided by the clusters added.

To watch 1 cluster while K exist, the registry's cluster list is narrowed for
the phase (``ClusterRegistry.clusters`` of this process's platform returns only
the phase's clusters), so every job behaves as if only those were registered.

The clusters live in a temporary data directory and are all deleted at the
end, also on Ctrl-C or an error. Figures are printed, not asserted.

    .venv/bin/python benchmarks/fleet_scale/bench_many_clusters.py [--clusters 20] [--window 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field

import httpx2
import psutil
from harness import MIB, in_child, kill_leftovers, machine

from pilothouse import logs
from pilothouse.fleet import requests
from pilothouse.kube import client as kube_client
from pilothouse.kube.credentials import ClusterCredentials
from pilothouse.platform import Platform
from pilothouse.reconcile.loop import jobs_of, run_periodically
from pilothouse.settings import load_settings
from pilothouse.store.clusters import ClusterRecord

#: The jobs of ``pilothouse up`` that observe clusters (reconcile, log rotation, compaction and
#: pruning act on local processes or the store, not on what is watched).
OBSERVABILITY = ("inventory", "health", "changes", "alerts")


# ----- child processes -------------------------------------------------------------------------


def provision_child(names: list[str], nodes: int, pods: int) -> list[dict[str, float]]:
    """Create the clusters one after the other, each with a Deployment of ``pods`` pods."""

    async def provision() -> list[dict[str, float]]:
        platform = Platform.open(load_settings())
        made: list[dict[str, float]] = []
        try:
            for n, name in enumerate(names, 1):
                started = time.monotonic()
                await platform.clusters.create_local(
                    requests.parse(requests.CreateLocalCluster, name=name, nodes=nodes)
                )
                created = time.monotonic()
                available = await deploy(platform.clusters.credentials(name), pods)
                done = time.monotonic()
                made.append({"create_s": created - started, "deploy_s": done - created})
                print(
                    f"  {n}/{len(names)} {name}: created in {created - started:.1f} s, "
                    f"{available}/{pods} pods available {done - created:.1f} s later",
                    flush=True,
                )
        finally:
            platform.close()
        return made

    return asyncio.run(provision())


async def deploy(creds: ClusterCredentials, pods: int, timeout: float = 180.0) -> int:
    """Create Deployment ``default/web`` with ``pods`` replicas; wait until they are available."""
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": pods,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.invalid/fleet-scale/web:1.0",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        }
                    ]
                },
            },
        },
    }
    headers = {"Authorization": f"Bearer {creds.token}"} if creds.token else {}
    path = "/apis/apps/v1/namespaces/default/deployments"
    async with httpx2.AsyncClient(
        base_url=creds.server,
        verify=kube_client.ssl_context_for(creds),
        headers=headers,
        timeout=30.0,
        trust_env=False,
    ) as http:
        response = await http.post(
            path, content=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        if response.status_code not in (201, 409):
            raise RuntimeError(f"creating the Deployment: HTTP {response.status_code}: {response.text[:300]}")
        deadline = time.monotonic() + timeout
        available = 0
        while True:
            response = await http.get(f"{path}/web")
            available = int(response.json().get("status", {}).get("availableReplicas") or 0)
            if available >= pods or time.monotonic() > deadline:
                return available
            await asyncio.sleep(0.5)


# ----- phases ------------------------------------------------------------------------------------


@dataclass
class Phase:
    label: str
    clusters: int
    cpu_percent: float = 0.0  # of one core, over the window
    other_percent: float = 0.0  # share of the machine's CPUs busy with anything but this process
    rss_mib: float = 0.0  # median over the window
    rss_samples: list[float] = field(default_factory=list)
    tasks: int = 0
    threads: int = 0
    heap_mib: float | None = None
    top_heap: list[str] = field(default_factory=list)
    synced_s: float = 0.0  # from starting the jobs to every watched inventory synced
    pods_cached: int = 0


def _system_busy() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + t.steal)


def _own_cpu() -> float:
    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


class Narrowed:
    """Makes this process's registry list only the clusters of the current phase."""

    def __init__(self, platform: Platform) -> None:
        self.all = platform.clusters.clusters
        self.allowed: set[str] = set()
        platform.clusters.clusters = self.clusters  # type: ignore[method-assign]

    def clusters(self) -> list[ClusterRecord]:
        return [r for r in self.all() if r.name in self.allowed]


async def observe(
    platform: Platform, narrowed: Narrowed, names: list[str], args: argparse.Namespace, *, trace: bool
) -> Phase:
    """Run the observability jobs for ``names`` from scratch; measure (see the module docstring)."""
    phase = Phase(f"{len(names)} cluster{'s' if len(names) > 1 else ''}", len(names))
    narrowed.allowed = set(names)
    gc.collect()
    if trace:
        tracemalloc.start()
    started = time.monotonic()
    jobs = [j for j in jobs_of(platform) if j.name in OBSERVABILITY]
    tasks = [asyncio.create_task(run_periodically(j), name=f"job:{j.name}") for j in jobs]
    try:
        async with asyncio.timeout(args.sync_timeout):
            for name in names:  # what the inventory job does on its first pass (idempotent)
                await platform.inventory.ensure(name)
            for name in names:
                await platform.inventory.wait_synced(name, timeout=args.sync_timeout)
        phase.synced_s = time.monotonic() - started
        await asyncio.sleep(args.warmup)
        phase.pods_cached = sum(platform.inventory.snapshot(n).pods_total for n in names)
        if trace:
            gc.collect()
            phase.heap_mib = tracemalloc.get_traced_memory()[0] / MIB
            stats = tracemalloc.take_snapshot().statistics("filename")
            phase.top_heap = [f"{s.size / 1024:8.0f} KiB  {s.traceback[0].filename}" for s in stats[:10]]
            return phase
        cpu0, busy0, t0 = _own_cpu(), _system_busy(), time.monotonic()
        end = t0 + args.window
        while time.monotonic() < end:
            phase.rss_samples.append(psutil.Process().memory_info().rss / MIB)
            await asyncio.sleep(min(args.sample_interval, max(0.0, end - time.monotonic())))
        cpu1, busy1, t1 = _own_cpu(), _system_busy(), time.monotonic()
        phase.cpu_percent = 100 * (cpu1 - cpu0) / (t1 - t0)
        other = max(0.0, (busy1 - busy0) - (cpu1 - cpu0))
        phase.other_percent = 100 * other / ((t1 - t0) * (os.cpu_count() or 1))
        phase.rss_mib = statistics.median(phase.rss_samples)
        phase.tasks = len(asyncio.all_tasks())
        phase.threads = psutil.Process().num_threads()
        return phase
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await platform.inventory.stop()
        await platform.alerts.drain()
        if trace:
            tracemalloc.stop()
        gc.collect()


# ----- orchestration -----------------------------------------------------------------------------


async def delete_all(platform: Platform) -> list[str]:
    failures = []
    for record in platform.clusters.store.clusters():
        try:
            await platform.clusters.delete(record.name)
        except Exception as exc:
            failures.append(f"{record.name}: {exc}")
    return failures


async def run(args: argparse.Namespace, home: str) -> None:
    names = [f"fleet-{n:02d}" for n in range(args.clusters)]
    print(f"machine: {machine()}")
    print(
        f"{args.clusters} local clusters, each 1 control plane, {args.nodes} nodes, {args.pods} pods; "
        f"jobs {', '.join(OBSERVABILITY)}; warm-up {args.warmup:g} s, window {args.window:g} s\n",
        flush=True,
    )
    platform: Platform | None = None
    try:
        started = time.monotonic()
        made: list[dict[str, float]] = await in_child(provision_child, names, args.nodes, args.pods)
        created_s = time.monotonic() - started
        print(f"created {len(made)} clusters in {created_s:.0f} s\n", flush=True)
        platform = Platform.open(load_settings())
        narrowed = Narrowed(platform)
        phases = []
        for subset in (names[:1], names):
            print(f"measuring {len(subset)} cluster(s) …", flush=True)
            phases.append(await observe(platform, narrowed, subset, args, trace=False))
        for phase, subset in zip(phases, (names[:1], names), strict=True):
            print(f"heap pass, {len(subset)} cluster(s) …", flush=True)
            traced = await observe(platform, narrowed, subset, args, trace=True)
            phase.heap_mib, phase.top_heap = traced.heap_mib, traced.top_heap
        report(args, made, created_s, phases)
    finally:
        if platform is None:
            with contextlib.suppress(Exception):
                platform = Platform.open(load_settings())
        if platform is not None:
            await platform.inventory.stop()
            failures = await delete_all(platform)
            for failure in failures:
                print(f"delete failed: {failure}")
            platform.close()
        killed = await asyncio.to_thread(kill_leftovers, home)
        if killed:
            print(f"killed leftover processes of this run: {', '.join(killed)}")


def report(
    args: argparse.Namespace, made: list[dict[str, float]], created_s: float, phases: list[Phase]
) -> None:
    one, many = phases
    print("\n== results ==")
    creates = [m["create_s"] for m in made]
    print(
        f"creating (informational): {len(made)} clusters in {created_s:.0f} s; per cluster median "
        f"{statistics.median(creates):.1f} s (max {max(creates):.1f} s) + "
        f"{statistics.median(m['deploy_s'] for m in made):.1f} s until its pods were available"
    )
    print(
        f"{'phase':<12} {'synced s':>8} {'pods':>6} {'CPU % of a core':>15} {'RSS MiB':>8} {'heap MiB':>8}"
        f" {'tasks':>6} {'threads':>7} {'other load %':>12}"
    )
    for p in phases:
        heap = f"{p.heap_mib:.1f}" if p.heap_mib is not None else "-"
        print(
            f"{p.label:<12} {p.synced_s:>8.1f} {p.pods_cached:>6} {p.cpu_percent:>15.2f} {p.rss_mib:>8.1f}"
            f" {heap:>8} {p.tasks:>6} {p.threads:>7} {p.other_percent:>12.0f}"
        )
    added = many.clusters - one.clusters
    if added > 0:
        cpu = (many.cpu_percent - one.cpu_percent) / added
        rss = (many.rss_mib - one.rss_mib) / added
        line = f"per added cluster: CPU {cpu:+.2f} % of a core, RSS {rss:+.2f} MiB"
        if many.heap_mib is not None and one.heap_mib is not None:
            line += f", heap {(many.heap_mib - one.heap_mib) / added * 1024:+.0f} KiB"
        print(line)
        ratio = many.cpu_percent / one.cpu_percent if one.cpu_percent else float("nan")
        print(
            f"{many.clusters} clusters vs 1: CPU {ratio:.1f}x, RSS {many.rss_mib / one.rss_mib:.2f}x; "
            f"average per watched cluster at {many.clusters}: CPU {many.cpu_percent / many.clusters:.2f} %, "
            f"RSS {many.rss_mib / many.clusters:.1f} MiB (incl. the process's fixed part)"
        )
    if many.top_heap:
        print(f"largest heap holders with {many.clusters} clusters (by file):")
        for line in many.top_heap:
            print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=5, help="kwok nodes per cluster")
    parser.add_argument("--pods", type=int, default=20, help="pods per cluster (one Deployment)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds of CPU and RSS measurement")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds after sync before measuring")
    parser.add_argument("--sample-interval", type=float, default=2.0, help="seconds between RSS samples")
    parser.add_argument("--sync-timeout", type=float, default=300.0)
    args = parser.parse_args()
    if args.clusters < 2:
        parser.error("--clusters must be at least 2 (the baseline watches 1)")
    logs.configure("WARNING")
    with tempfile.TemporaryDirectory(prefix="pilothouse-fleet-many-") as home:
        os.environ["PILOTHOUSE_DATA_DIR"] = f"{home}/data"
        os.environ["PILOTHOUSE_CONFIG_DIR"] = f"{home}/config"
        os.environ["PILOTHOUSE_CONFIG"] = f"{home}/config/config.yaml"
        try:
            asyncio.run(run(args, home))
        except KeyboardInterrupt:
            print("interrupted; the clusters of this run were deleted")
            raise SystemExit(130) from None


if __name__ == "__main__":
    main()
