"""Benchmark: a full control-plane upgrade of an HA local cluster, and the requests it fails.

Creates an HA cluster (3 etcd members, 3 API servers behind HAProxy) on the
older supported release with ``--nodes`` simulated nodes, starts probe
clients that send an authenticated ``GET /api/v1/namespaces/default`` through
the load balancer without pause (each on a new connection, as a fleet of
clients would), and upgrades the control plane to the newer release through
Pilothouse's durable upgrade operation. Printed: the upgrade's total time and
each step's, the probe requests sent and failed (goal: 0 failed), and, as the
baseline measured in the same run, the same probes over an equally long
window with no upgrade running.

    .venv/bin/python benchmarks/control_plane_upgrade/bench_upgrade.py [--nodes 10] [--clients 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from pilothouse import logs
from pilothouse.fleet import operations, requests
from pilothouse.platform import Platform
from pilothouse.providers.local.provider import LocalRuntime
from pilothouse.settings import load_settings

FROM, TO = "1.35.4", "1.36.3"


@dataclass
class Probes:
    """``clients`` threads sending requests through the load balancer until stopped."""

    url: str
    context: ssl.SSLContext
    clients: int
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._stop.clear()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> tuple[int, list[str]]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        with self._lock:
            result = (self.ok, list(self.failures))
            self.ok, self.failures = 0, []
        return result

    def _run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(verify=self.context, timeout=10.0, limits=limits, trust_env=False) as http:
            while not self._stop.is_set():
                try:
                    response = http.get(self.url)
                    outcome = None if response.status_code == 200 else f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    if outcome is None:
                        self.ok += 1
                    else:
                        self.failures.append(f"{time.strftime('%X')} {outcome}")


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


async def _run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-upgrade-") as home:
        os.environ.update(
            {
                "PILOTHOUSE_DATA_DIR": f"{home}/data",
                "PILOTHOUSE_CONFIG_DIR": f"{home}/config",
                "PILOTHOUSE_CONFIG": f"{home}/config/config.yaml",
            }
        )
        logs.configure("WARNING")
        platform = Platform.open(load_settings())
        name = "bench-upgrade"
        try:
            record = await platform.clusters.create_local(
                requests.parse(
                    requests.CreateLocalCluster, name=name, nodes=args.nodes, control_planes=3, version=FROM
                )
            )
            runtime = LocalRuntime.from_dict(record.runtime)
            pki = runtime.layout.pki
            context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
            url = f"https://127.0.0.1:{runtime.ports.load_balancer}/api/v1/namespaces/default"
            probes = Probes(url, context, args.clients)

            operation = await platform.upgrades.start(name, TO, created_by="benchmark")
            probes.start()
            started = time.monotonic()
            done = await platform.operations.run(operation.id)
            upgrade_seconds = time.monotonic() - started
            await asyncio.sleep(1)
            sent_during, failed_during = probes.stop()

            probes.start()  # baseline: the same probes, as long, nothing changing
            await asyncio.sleep(upgrade_seconds)
            sent_idle, failed_idle = probes.stop()

            print(
                f"upgrade {FROM} -> {TO} of a 3-control-plane cluster with {args.nodes} nodes: {done.phase}"
            )
            print(f"  total {upgrade_seconds:.1f} s")
            for step in operations.journal(done):
                print(f"  {step.name:28} {_seconds(step.started_at, step.finished_at):6.1f} s  {step.detail}")
            print(
                f"probe requests during the upgrade: {sent_during + len(failed_during)} sent, "
                f"{len(failed_during)} failed ({args.clients} clients, a new connection each)"
            )
            print(
                f"baseline, same length without an upgrade: {sent_idle + len(failed_idle)} sent, "
                f"{len(failed_idle)} failed"
            )
            if sent_idle:
                print(f"throughput during / baseline: {sent_during / max(sent_idle, 1):.2f}")
            for failure in failed_during[:10]:
                print(f"  failed: {failure}")
        finally:
            if platform.clusters.store.find(name) is not None:
                await platform.clusters.delete(name)
            platform.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
