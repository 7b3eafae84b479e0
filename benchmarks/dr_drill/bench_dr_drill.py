"""Benchmark: the RTO of a DR drill of a local cluster holding about 20,000 objects.

A local cluster (1 control plane, ``--nodes`` kwok nodes) is created with the
real CLI in a temporary data directory; ConfigMaps and Secrets (a tenth of
them; Secrets are encrypted at rest, so the restored cluster must read them
with the backup's key) are added through the API until the cluster serves
``--objects`` objects in all. Then ``pilothouse dr drill CLUSTER --json`` runs
``--runs`` times: snapshot (etcdctl), the source listed as of the snapshot's
revision, a scratch cluster restored (etcdutl) and started, every object
compared, the scratch cluster deleted. Each run's RTO (recovery start → every
object served and checked), RPO, time to a serving API and the wall time of
the whole command are printed; the goal is an RTO under 60 s. Nothing is
asserted; README.md records the figures.

    .venv/bin/python benchmarks/dr_drill/bench_dr_drill.py [--objects 20000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import json
import os
import platform as platform_mod
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
import psutil

from pilothouse.kube import client as kube_client
from pilothouse.kube import objects as kube_objects
from pilothouse.platform import Platform
from pilothouse.settings import load_settings

CLUSTER = "dr-bench"
NAMESPACES = 20
PILOTHOUSE = str(Path(sys.executable).with_name("pilothouse"))


def _cli(env: dict[str, str], *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PILOTHOUSE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _machine() -> str:
    memory = psutil.virtual_memory().total / 1024**3
    return f"{os.cpu_count()} CPUs, {memory:.1f} GiB, Linux {platform_mod.release()}, Python {platform_mod.python_version()}"


async def _populate(env: dict[str, str], objects: int) -> int:
    """Add ConfigMaps and Secrets until the cluster serves about ``objects`` objects; return the count."""
    os.environ.update({k: v for k, v in env.items() if k.startswith("PILOTHOUSE_")})
    platform = Platform.open(load_settings())
    try:
        creds = platform.clusters.credentials(CLUSTER)
    finally:
        platform.close()
    existing = len((await kube_objects.list_objects(creds)).objects)
    wanted = max(0, objects - existing - NAMESPACES)
    secrets = wanted // 10
    gate = asyncio.Semaphore(32)
    async with httpx2.AsyncClient(
        verify=kube_client.ssl_context_for(creds), timeout=60.0, trust_env=False, base_url=creds.server
    ) as http:
        for n in range(NAMESPACES):
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"bench-{n:02d}"}}
            (await http.post("/api/v1/namespaces", json=body)).raise_for_status()

        async def create(i: int) -> None:
            namespace = f"bench-{i % NAMESPACES:02d}"
            if i < secrets:
                kind, path = "Secret", f"/api/v1/namespaces/{namespace}/secrets"
                body: dict[str, Any] = {
                    "data": {"password": base64.b64encode(os.urandom(16)).decode()},
                }
            else:
                kind, path = "ConfigMap", f"/api/v1/namespaces/{namespace}/configmaps"
                body = {"data": {"index": str(i), "payload": "x" * 200}}
            body |= {"apiVersion": "v1", "kind": kind, "metadata": {"name": f"obj-{i:06d}"}}
            async with gate:
                for attempt in range(5):
                    response = await http.post(path, json=body)
                    if response.status_code in (201, 409):
                        return
                    await asyncio.sleep(0.2 * (attempt + 1))
                response.raise_for_status()

        started = time.monotonic()
        await asyncio.gather(*(create(i) for i in range(wanted)))
        print(f"created {wanted} objects ({secrets} Secrets) in {time.monotonic() - started:.1f} s")
    return len((await kube_objects.list_objects(creds)).objects)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="pilothouse-bench-dr-"))
    env = {
        **os.environ,
        "PILOTHOUSE_DATA_DIR": str(home / "data"),
        "PILOTHOUSE_CONFIG_DIR": str(home / "config"),
        "PILOTHOUSE_CONFIG": str(home / "config" / "config.yaml"),
    }
    print(f"machine: {_machine()}; {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    created = _cli(env, "cluster", "create", CLUSTER, f"--nodes={args.nodes}")
    if created.returncode != 0:
        sys.exit(created.stderr)
    reports: list[dict[str, Any]] = []
    walls: list[float] = []
    try:
        served = asyncio.run(_populate(env, args.objects))
        print(f"the cluster serves {served} objects")
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            result = _cli(env, "dr", "drill", CLUSTER, "--json")
            wall = time.monotonic() - started
            if result.returncode != 0:
                print(result.stdout[-2000:], result.stderr[-2000:])
                sys.exit(f"run {run}: the drill failed")
            report = json.loads(result.stdout)
            comparison = report["comparison"]
            reports.append(report)
            walls.append(wall)
            print(
                f"run {run}: RTO {report['rto_seconds']:.1f} s (API serving after "
                f"{report['time_to_serving_seconds']:.1f} s), RPO {report['rpo_seconds']:.1f} s, "
                f"whole drill {wall:.1f} s; {comparison['source_objects']} objects, "
                f"{comparison['equal']} identical, {comparison['updated_after_restore']} updated and "
                f"{comparison['replaced_after_restore']} replaced after the restore, "
                f"missing {comparison['missing']}, mismatched {comparison['mismatched']}; "
                f"snapshot {report['snapshot_bytes'] / 1024**2:.1f} MiB"
            )
    finally:
        _cli(env, "cluster", "delete", CLUSTER, "--yes")
        shutil.rmtree(home, ignore_errors=True)
    rto = [r["rto_seconds"] for r in reports]
    serving = [r["time_to_serving_seconds"] for r in reports]
    print(
        f"median of {len(reports)}: RTO {statistics.median(rto):.1f} s (goal < 60 s: "
        f"{'met' if statistics.median(rto) < 60 else 'NOT met'}), API serving {statistics.median(serving):.1f} s, "
        f"whole drill {statistics.median(walls):.1f} s"
    )


if __name__ == "__main__":
    main()
