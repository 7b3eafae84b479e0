"""Benchmark: Pilothouse's memory while a watched cluster stays away for minutes.

One Pilothouse process watches two local clusters (inventory watches on nine
kinds each, health probes every few seconds, change feed) — the jobs
``pilothouse up`` runs. After a baseline with both clusters up, the API server
of one cluster is killed and kept down for ``--down-minutes``; then it is
restarted and the inventory must resync. Pilothouse's RSS and the Python heap
(tracemalloc) are sampled throughout. The figure that matters is the growth
while the cluster is away: it should be flat (no retry queues, buffers or
tasks piling up). Figures are printed, not asserted; README.md records them.

    .venv/bin/python benchmarks/outage_memory/bench_outage_memory.py [--down-minutes 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import statistics
import tempfile
import time
import tracemalloc
from dataclasses import dataclass

import psutil

from pilothouse import logs
from pilothouse.fleet import requests
from pilothouse.platform import Platform
from pilothouse.providers.local.provider import LocalRuntime
from pilothouse.reconcile.loop import Job, jobs_of, run_periodically
from pilothouse.settings import load_settings

MIB = 1024 * 1024


@dataclass
class Sample:
    phase: str
    at: float
    rss_mib: float
    heap_kib: float
    tasks: int
    away_connected: bool | None


def _sample(phase: str, start: float, platform: Platform, away: str) -> Sample:
    gc.collect()
    current, _peak = tracemalloc.get_traced_memory()
    connected = None
    if away in platform.inventory.names():
        connected = platform.inventory.snapshot(away).connected
    return Sample(
        phase=phase,
        at=time.monotonic() - start,
        rss_mib=psutil.Process().memory_info().rss / MIB,
        heap_kib=current / 1024,
        tasks=len(asyncio.all_tasks()),
        away_connected=connected,
    )


async def _run(args: argparse.Namespace) -> list[Sample]:
    settings = load_settings()
    platform = Platform.open(settings)
    stay, away = "bench-stay", "bench-away"
    for name in (stay, away):
        await platform.clusters.create_local(
            requests.parse(requests.CreateLocalCluster, name=name, nodes=args.nodes)
        )
    wanted = {"health", "inventory", "changes", "reconcile"}
    jobs = [j for j in jobs_of(platform) if j.name in wanted]
    jobs = [Job(j.name, min(j.interval, 2.0), j.run) if j.name == "health" else j for j in jobs]
    # the reconciler would restart the killed API server at once: keep it for the recovery phase
    background = [asyncio.create_task(run_periodically(j)) for j in jobs if j.name != "reconcile"]
    samples: list[Sample] = []
    start = time.monotonic()
    try:
        await asyncio.sleep(5)
        tracemalloc.start()

        async def phase(name: str, seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                samples.append(_sample(name, start, platform, away))
                await asyncio.sleep(args.interval)

        await phase("both up", args.baseline_seconds)
        runtime = LocalRuntime.from_dict(platform.clusters.get(away).runtime)
        platform.clusters.local.kill(runtime, "kube-apiserver-0")
        await phase("one cluster away", 30)  # let retries settle into their longest backoff
        gc.collect()
        before = tracemalloc.take_snapshot()
        await phase("one cluster away", args.down_minutes * 60 - 30)
        gc.collect()
        growth = tracemalloc.take_snapshot().compare_to(before, "lineno")
        print("largest heap growth while away (after the first 30 s):")
        for stat in growth[:8]:
            print(f"  {stat.size_diff / 1024:+8.1f} KiB  {stat.count_diff:+6d} blocks  {stat.traceback}")
        await platform.clusters.start(away)
        await platform.inventory.ensure(away)
        await platform.inventory.wait_synced(away, timeout=120)
        await phase("after recovery", args.baseline_seconds)
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await platform.inventory.stop()
        for name in (stay, away):
            with contextlib.suppress(Exception):
                await platform.clusters.delete(name)
        platform.close()
    return samples


def _report(samples: list[Sample]) -> None:
    print(
        f"{'phase':<18} {'samples':>7} {'RSS MiB first→last (max)':>28} {'heap KiB first→last (max)':>30} {'tasks':>7}"
    )
    for phase in ("both up", "one cluster away", "after recovery"):
        rows = [s for s in samples if s.phase == phase]
        if not rows:
            continue
        rss = [s.rss_mib for s in rows]
        heap = [s.heap_kib for s in rows]
        print(
            f"{phase:<18} {len(rows):>7} {rss[0]:>10.1f} → {rss[-1]:>6.1f} ({max(rss):>6.1f})"
            f" {heap[0]:>12.0f} → {heap[-1]:>6.0f} ({max(heap):>6.0f}) {statistics.median(s.tasks for s in rows):>7.0f}"
        )
    away = [s for s in samples if s.phase == "one cluster away"]
    if len(away) >= 4:
        quarter = max(1, len(away) // 4)
        early = statistics.median(s.heap_kib for s in away[:quarter])
        late = statistics.median(s.heap_kib for s in away[-quarter:])
        rss_early = statistics.median(s.rss_mib for s in away[:quarter])
        rss_late = statistics.median(s.rss_mib for s in away[-quarter:])
        print(
            f"\nwhile away: heap {early:.0f} → {late:.0f} KiB ({late - early:+.0f} KiB),"
            f" RSS {rss_early:.1f} → {rss_late:.1f} MiB ({rss_late - rss_early:+.1f} MiB), first vs last quarter medians"
        )
        print(
            f"away cluster's watches reported disconnected in {sum(s.away_connected is False for s in away)}/{len(away)} samples"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--down-minutes", type=float, default=3.0)
    parser.add_argument("--baseline-seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--nodes", type=int, default=10)
    args = parser.parse_args()
    logs.configure("WARNING")
    with tempfile.TemporaryDirectory(prefix="pilothouse-bench-") as home:
        os.environ["PILOTHOUSE_DATA_DIR"] = f"{home}/data"
        os.environ["PILOTHOUSE_CONFIG_DIR"] = f"{home}/config"
        os.environ["PILOTHOUSE_CONFIG"] = f"{home}/config/config.yaml"
        samples = asyncio.run(_run(args))
    _report(samples)


if __name__ == "__main__":
    main()
