"""Benchmark: Pilothouse's live inventory on one big cluster (N nodes, M pods).

One local cluster (1 control plane, ``--nodes`` kwok nodes) is created with the
project's local provider; then ``--pods`` pods are created directly through the
API (many concurrent requests, each pod pre-bound to a node with
``spec.nodeName``, so neither the scheduler nor a controller's client QPS is in
the way) and kwok marks them Running. Against that cluster this measures, for
``FleetInventory`` (the nine watched kinds of ``pilothouse up``):

- **sync time**: from ``ensure`` (start watching) to ``wait_synced``, with the
  pods and, as the baseline of the same run, with no pods;
- **memory per cached pod**: the Python heap (tracemalloc) and the RSS the
  synced inventory holds, minus the same for the pod-less baseline, divided
  by the number of pods (goal < 2 KiB/pod);
- **change-to-visible latency** under ``--change-rate`` pod changes per second
  for ``--change-seconds``: a driver process patches pod status (each change sets
  a container's ``restartCount`` to a new value, carried into ``PodSummary.restarts``)
  on an open-loop schedule; this process polls the inventory's pod cache every
  ``--poll-ms`` and records when each new value becomes visible. p50/p99/max are
  printed from the API call's return and from its sending, with the changes
  never seen (goal: p99 < 1 s).

Pod creation, and the change driver, run in child processes so that this
process (the one measured) does nothing but Pilothouse's work. The cluster
lives in a temporary data directory and is deleted at the end, also on
Ctrl-C or an error. Figures are printed, not asserted; README.md records them.

    .venv/bin/python benchmarks/fleet_scale/bench_big_cluster.py [--nodes 2000] [--pods 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx2
import psutil
from harness import MIB, in_child, kill_leftovers, machine
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pilothouse import logs
from pilothouse.fleet import requests
from pilothouse.kube import client as kube_client
from pilothouse.kube.credentials import ClusterCredentials
from pilothouse.platform import Platform
from pilothouse.settings import load_settings

KIB = 1024
CLUSTER = "fleet-big"
#: Pods per owner object: real pods belong to a ReplicaSet; here a ConfigMap stands in (see README).
PODS_PER_OWNER = 100
OWNER_HASH = "7d9f8c6b5d"
RETRY_STATUS = {429, 500, 502, 503, 504}


# ----- names shared by the creating, driving and polling processes ------------------------------


def namespace_of(i: int, namespaces: int) -> str:
    return f"fleet-{i % namespaces:03d}"


def owner_of(i: int, namespaces: int) -> str:
    return f"app-{(i // namespaces) // PODS_PER_OWNER:04d}-{OWNER_HASH}"


def pod_name(i: int, namespaces: int) -> str:
    return f"{owner_of(i, namespaces)}-{i // namespaces:06d}"


def pods_in_namespace(n: int, pods: int, namespaces: int) -> int:
    return pods // namespaces + (1 if n < pods % namespaces else 0)


def change_target(j: int, pods: int) -> tuple[int, int]:
    """Change ``j`` goes to pod ``(j * stride) % pods`` (spread over namespaces and nodes) and
    sets its restart count to the number of times that pod has been changed so far."""
    stride = _coprime_stride(pods)
    return (j * stride) % pods, j // pods + 1


def _coprime_stride(pods: int) -> int:
    stride = 7919  # a prime: coprime with any pod count it does not divide
    return stride if pods % stride else 1


# ----- child processes -------------------------------------------------------------------------


def create_cluster_child(name: str, nodes: int) -> float:
    """Create the local cluster (in the child); seconds it took."""

    async def create() -> float:
        platform = Platform.open(load_settings())
        try:
            started = time.monotonic()
            await platform.clusters.create_local(
                requests.parse(requests.CreateLocalCluster, name=name, nodes=nodes)
            )
            return time.monotonic() - started
        finally:
            platform.close()

    return asyncio.run(create())


def http_client(creds: ClusterCredentials, connections: int) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {creds.token}"} if creds.token else {}
    return httpx2.AsyncClient(
        base_url=creds.server,
        verify=kube_client.ssl_context_for(creds),
        headers=headers,
        timeout=httpx2.Timeout(60.0),
        trust_env=False,
        limits=httpx2.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


async def send(
    http: httpx2.AsyncClient,
    method: str,
    path: str,
    body: Any = None,
    *,
    tolerate: Sequence[int] = (),
    params: dict[str, str] | None = None,
) -> httpx2.Response:
    """One API request, retried on transport errors, 429 and 5xx (6 attempts)."""
    content = json.dumps(body, separators=(",", ":")) if body is not None else None
    headers = {"Content-Type": "application/json"} if content is not None else {}
    for attempt in range(6):
        last = attempt == 5
        try:
            response = await http.request(method, path, content=content, headers=headers, params=params)
        except httpx2.TransportError:
            if last:
                raise
            await asyncio.sleep(0.2 * 2**attempt)
            continue
        if response.status_code < 300 or response.status_code in tolerate:
            return response
        if response.status_code in RETRY_STATUS and not last:
            retry_after = response.headers.get("Retry-After", "")
            await asyncio.sleep(float(retry_after) if retry_after.isdigit() else 0.2 * 2**attempt)
            continue
        raise RuntimeError(f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}")
    raise AssertionError("unreachable")


def pod_body(i: int, namespaces: int, node: str, owner_uid: str) -> dict[str, Any]:
    owner = owner_of(i, namespaces)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(i, namespaces),
            "namespace": namespace_of(i, namespaces),
            "labels": {"app": owner, "pod-template-hash": OWNER_HASH, "benchmark": "fleet-scale"},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": owner_uid, "controller": True}
            ],
        },
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "containers": [
                {
                    "name": "app",
                    "image": "registry.invalid/fleet-scale/app:1.0",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ],
        },
    }


def create_pods_child(
    creds: ClusterCredentials, pods: int, namespaces: int, concurrency: int, running_timeout: float
) -> dict[str, float]:
    """Create the namespaces, owner objects and pods (in the child); wait until all are Running."""
    return asyncio.run(_create_pods(creds, pods, namespaces, concurrency, running_timeout))


async def _create_pods(
    creds: ClusterCredentials, pods: int, namespaces: int, concurrency: int, running_timeout: float
) -> dict[str, float]:
    started = time.monotonic()
    async with http_client(creds, concurrency) as http:
        nodes_doc = (await send(http, "GET", "/api/v1/nodes")).json()
        nodes = sorted(item["metadata"]["name"] for item in nodes_doc["items"])
        if not nodes:
            raise RuntimeError("the cluster has no nodes")
        used = min(namespaces, pods) or 1
        for n in range(used):
            name = f"fleet-{n:03d}"
            await send(http, "POST", "/api/v1/namespaces", {"metadata": {"name": name}}, tolerate=(409,))
        for n in range(used):  # the ServiceAccount admission plugin needs each namespace's default SA
            path = f"/api/v1/namespaces/fleet-{n:03d}/serviceaccounts/default"
            deadline = time.monotonic() + 60
            while (await send(http, "GET", path, tolerate=(404,))).status_code == 404:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no default ServiceAccount in fleet-{n:03d} after 60 s")
                await asyncio.sleep(0.2)
        owners: dict[tuple[str, str], str] = {}

        async def create_owner(namespace: str, owner: str) -> None:
            path = f"/api/v1/namespaces/{namespace}/configmaps"
            body = {"metadata": {"name": owner, "labels": {"benchmark": "fleet-scale"}}}
            response = await send(http, "POST", path, body, tolerate=(409,))
            if response.status_code == 409:
                response = await send(http, "GET", f"{path}/{owner}")
            owners[(namespace, owner)] = response.json()["metadata"]["uid"]

        wanted = {(namespace_of(i, used), owner_of(i, used)) for i in range(0, pods)}
        gate = asyncio.Semaphore(concurrency)

        async def gated(namespace: str, owner: str) -> None:
            async with gate:
                await create_owner(namespace, owner)

        await asyncio.gather(*(gated(ns, owner) for ns, owner in sorted(wanted)))
        prepared = time.monotonic()

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
        )
        next_index = done = 0
        failures: list[str] = []
        with Progress(*columns) as progress:
            bar = progress.add_task("creating pods", total=pods, rate="")

            async def worker() -> None:
                nonlocal next_index, done
                while next_index < pods and not failures:
                    i = next_index
                    next_index += 1
                    namespace = namespace_of(i, used)
                    body = pod_body(i, used, nodes[i % len(nodes)], owners[(namespace, owner_of(i, used))])
                    try:
                        await send(
                            http, "POST", f"/api/v1/namespaces/{namespace}/pods", body, tolerate=(409,)
                        )
                    except Exception as exc:
                        failures.append(f"pod {i}: {exc}")
                        return
                    done += 1
                    elapsed = time.monotonic() - prepared
                    progress.update(
                        bar, completed=done, rate=f"{done / elapsed:.0f} pods/s" if elapsed else ""
                    )

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            if failures:
                raise RuntimeError(f"creating pods failed: {failures[0]}")
            created = time.monotonic()

            running_bar = progress.add_task("pods Running (kwok)", total=pods, rate="")
            pending = pods
            deadline = created + running_timeout
            while True:
                pending = await _count_not_running(http)
                progress.update(running_bar, completed=pods - pending)
                if pending == 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(2.0)
            running = time.monotonic()
    return {
        "prepare_s": prepared - started,
        "create_s": created - prepared,
        "running_s": running - created,
        "not_running": float(pending),
        "nodes": float(len(nodes)),
    }


async def _count_not_running(http: httpx2.AsyncClient) -> int:
    count = 0
    params = {"fieldSelector": "status.phase!=Running", "limit": "500"}
    while True:
        doc = (await send(http, "GET", "/api/v1/pods", params=params)).json()
        count += len(doc["items"])
        cont = (doc.get("metadata") or {}).get("continue")
        if not cont:
            return count
        params = {**params, "continue": cont}


def drive_changes_child(
    creds: ClusterCredentials,
    pods: int,
    namespaces: int,
    rate: float,
    total: int,
    start_at: float,
    max_in_flight: int,
) -> dict[str, Any]:
    """Patch pod status at ``rate`` changes/s from ``start_at`` (monotonic, shared by processes)."""
    return asyncio.run(_drive(creds, pods, namespaces, rate, total, start_at, max_in_flight))


async def _drive(
    creds: ClusterCredentials,
    pods: int,
    namespaces: int,
    rate: float,
    total: int,
    start_at: float,
    max_in_flight: int,
) -> dict[str, Any]:
    used = min(namespaces, pods) or 1
    results: list[tuple[int, float, float, float, int]] = []  # (j, due, sent, returned, status)
    errors: list[str] = []
    gate = asyncio.Semaphore(max_in_flight)
    async with http_client(creds, max_in_flight) as http:
        await asyncio.gather(*(http.get("/version") for _ in range(min(8, max_in_flight))))  # warm up

        async def change(j: int, due: float) -> None:
            i, restarts = change_target(j, pods)
            path = f"/api/v1/namespaces/{namespace_of(i, used)}/pods/{pod_name(i, used)}/status"
            body = json.dumps(
                [{"op": "replace", "path": "/status/containerStatuses/0/restartCount", "value": restarts}]
            )
            async with gate:
                sent = time.monotonic()
                try:
                    response = await http.patch(
                        path, content=body, headers={"Content-Type": "application/json-patch+json"}
                    )
                    status = response.status_code
                    if status != 200 and len(errors) < 5:
                        errors.append(f"HTTP {status}: {response.text[:200]}")
                except httpx2.HTTPError as exc:
                    status = -1
                    if len(errors) < 5:
                        errors.append(f"{type(exc).__name__}: {exc}")
                results.append((j, due, sent, time.monotonic(), status))

        start = max(start_at, time.monotonic())
        tasks: set[asyncio.Task[None]] = set()
        for j in range(total):
            due = start + j / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(change(j, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    return {"start": start, "results": results, "errors": errors}


# ----- measurements in this process --------------------------------------------------------------


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


@dataclass
class SyncFigures:
    label: str
    seconds: float
    pods: int
    nodes: int
    rss_delta: int | None = None  # bytes held after sync, no tracemalloc running
    heap: int | None = None  # bytes traced after sync (tracemalloc on during the sync)


async def measure_sync(
    platform: Platform, label: str, *, trace: bool, timeout: float, settle: float
) -> SyncFigures:
    """Watch the cluster from scratch, wait until synced (+ ``settle`` s), measure, stop watching."""
    gc.collect()
    before = rss()
    if trace:
        tracemalloc.start()
    try:
        started = time.monotonic()
        await platform.inventory.ensure(CLUSTER)
        snapshot = await platform.inventory.wait_synced(CLUSTER, timeout=timeout)
        seconds = time.monotonic() - started
        await asyncio.sleep(settle)
        gc.collect()
        figures = SyncFigures(label, seconds, snapshot.pods_total, snapshot.nodes_total)
        if trace:
            figures.heap = tracemalloc.get_traced_memory()[0]
        else:
            figures.rss_delta = rss() - before
    finally:
        if trace:
            tracemalloc.stop()
        await platform.inventory.remove(CLUSTER)
    gc.collect()
    return figures


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class ChangeFigures:
    planned: int
    sent: int
    failed: int
    unseen: int
    from_return: list[float]
    from_send: list[float]
    seen_before_return: int
    late_sends: int  # sent more than 100 ms after their due time (the driver fell behind)
    api_latency: list[float]  # send to return of each accepted PATCH
    achieved_rate: float
    cpu_percent: float
    window_s: float
    errors: list[str]


async def measure_changes(
    platform: Platform, creds: ClusterCredentials, args: argparse.Namespace, namespaces: int
) -> ChangeFigures:
    inventory = await platform.inventory.ensure(CLUSTER)
    await platform.inventory.wait_synced(CLUSTER, timeout=args.sync_timeout)
    await asyncio.sleep(args.settle)
    total = int(args.change_rate * args.change_seconds)
    used = min(namespaces, args.pods) or 1
    keys: list[tuple[str, str]] = []
    expected: list[int] = []
    for j in range(total):
        i, restarts = change_target(j, args.pods)
        keys.append((namespace_of(i, used), pod_name(i, used)))
        expected.append(restarts)
    seen: list[float | None] = [None] * total
    stop = asyncio.Event()
    start_at = time.monotonic() + 5.0  # the driver process needs a moment to start
    interval = args.poll_ms / 1000

    async def poll() -> None:
        due_index = 0
        pending: list[int] = []
        while not stop.is_set():
            now = time.monotonic()
            due = min(total, max(0, int((now - start_at) * args.change_rate) + 1)) if now >= start_at else 0
            pending.extend(range(due_index, due))
            due_index = max(due_index, due)
            items = inventory.pods.items
            still: list[int] = []
            for j in pending:
                summary = items.get(keys[j])
                if summary is not None and summary.restarts >= expected[j]:
                    seen[j] = now
                elif now - (start_at + j / args.change_rate) < args.lost_after + 10:  # 10: driver start slack
                    still.append(j)
            pending = still
            await asyncio.sleep(interval)

    poller = asyncio.create_task(poll())
    cpu0, t0 = cpu_seconds(), time.monotonic()
    try:
        driven = await in_child(
            drive_changes_child,
            creds,
            args.pods,
            namespaces,
            args.change_rate,
            total,
            start_at,
            args.max_in_flight,
        )
        accepted = [r[0] for r in driven["results"] if r[4] == 200]
        for _ in range(int(args.lost_after / 0.2)):  # stragglers: wait up to --lost-after
            if all(seen[j] is not None for j in accepted):
                break
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await poller
    cpu1, t1 = cpu_seconds(), time.monotonic()
    results: list[tuple[int, float, float, float, int]] = driven["results"]
    ok = [r for r in results if r[4] == 200]
    from_return: list[float] = []
    from_send: list[float] = []
    before_return = unseen = 0
    for j, _due, sent, returned, _status in ok:
        at = seen[j]
        if at is None:
            unseen += 1
            continue
        from_send.append(at - sent)
        from_return.append(max(0.0, at - returned))
        before_return += at < returned
    sends = sorted(r[2] for r in results)
    span = sends[-1] - sends[0] if len(sends) > 1 else 0.0
    return ChangeFigures(
        planned=total,
        sent=len(results),
        failed=len(results) - len(ok),
        unseen=unseen,
        from_return=from_return,
        from_send=from_send,
        seen_before_return=before_return,
        late_sends=sum(1 for r in results if r[2] - r[1] > 0.1),
        api_latency=[r[3] - r[2] for r in ok],
        achieved_rate=(len(sends) - 1) / span if span else 0.0,
        cpu_percent=100 * (cpu1 - cpu0) / (t1 - t0),
        window_s=t1 - t0,
        errors=list(driven["errors"]),
    )


# ----- orchestration -----------------------------------------------------------------------------


async def run(args: argparse.Namespace, home: str) -> None:
    print(f"machine: {machine()}")
    print(
        f"cluster: 1 control plane, {args.nodes} nodes, {args.pods} pods in {args.namespaces} namespaces; "
        f"changes: {args.change_rate:g}/s for {args.change_seconds:g} s\n",
        flush=True,
    )
    platform: Platform | None = None
    try:
        created_s = await in_child(create_cluster_child, CLUSTER, args.nodes)
        print(f"cluster created with {args.nodes} Ready nodes in {created_s:.1f} s", flush=True)
        platform = Platform.open(load_settings())
        creds = platform.clusters.credentials(CLUSTER)

        common = {"timeout": args.sync_timeout, "settle": args.settle}
        await measure_sync(platform, "warm-up", trace=False, **common)  # imports, TLS, first-use caches
        empty = await measure_sync(platform, "no pods", trace=False, **common)
        empty_heap = await measure_sync(platform, "no pods (traced)", trace=True, **common)
        print(
            f"baseline (no pods): synced in {empty.seconds:.2f} s, {empty.nodes} nodes, {empty.pods} pods",
            flush=True,
        )

        made = await in_child(
            create_pods_child, creds, args.pods, args.namespaces, args.concurrency, args.running_timeout
        )
        print(
            f"created {args.pods} pods in {made['create_s']:.1f} s ({args.pods / made['create_s']:.0f} pods/s, "
            f"{args.concurrency} concurrent requests; namespaces and owners took {made['prepare_s']:.1f} s); "
            f"all Running {made['running_s']:.1f} s after the last create",
            flush=True,
        )
        if made["not_running"]:
            print(f"  WARNING: {made['not_running']:.0f} pods not Running after {args.running_timeout:.0f} s")

        full = await measure_sync(platform, "with pods", trace=False, **common)
        print(f"synced with {full.pods} pods in {full.seconds:.2f} s", flush=True)
        full_heap = await measure_sync(platform, "with pods (traced)", trace=True, **common)

        changes = await measure_changes(platform, creds, args, args.namespaces)
        snapshot = platform.inventory.snapshot(CLUSTER)
        report(args, created_s, made, empty, empty_heap, full, full_heap, changes, snapshot.nodes_ready)
    finally:
        if platform is None:
            with contextlib.suppress(Exception):
                platform = Platform.open(load_settings())
        if platform is not None:
            await platform.inventory.stop()
            with contextlib.suppress(Exception):
                if platform.clusters.store.find(CLUSTER) is not None:
                    await platform.clusters.delete(CLUSTER)
            platform.close()
        killed = await asyncio.to_thread(kill_leftovers, home)
        if killed:
            print(f"killed leftover processes of this run: {', '.join(killed)}")


def report(
    args: argparse.Namespace,
    created_s: float,
    made: dict[str, float],
    empty: SyncFigures,
    empty_heap: SyncFigures,
    full: SyncFigures,
    full_heap: SyncFigures,
    changes: ChangeFigures,
    nodes_ready: int,
) -> None:
    pods = full.pods - empty.pods
    print("\n== results ==")
    print(f"objects: {full.nodes} nodes ({nodes_ready} Ready at the end), {full.pods} pods")
    print(
        f"creating (informational): cluster {created_s:.1f} s; pods {made['create_s']:.1f} s "
        f"({args.pods / made['create_s']:.0f}/s); Running after a further {made['running_s']:.1f} s"
    )
    print(
        f"sync time: {full.seconds:.2f} s with {full.pods} pods; {empty.seconds:.2f} s without "
        f"({full.seconds / empty.seconds:.1f}x the pod-less baseline)"
    )
    if (
        pods > 0
        and full.rss_delta is not None
        and empty.rss_delta is not None
        and full_heap.heap is not None
        and empty_heap.heap is not None
    ):
        rss_per_pod = (full.rss_delta - empty.rss_delta) / pods
        heap_per_pod = (full_heap.heap - empty_heap.heap) / pods
        print(
            f"memory per cached pod: heap {heap_per_pod:.0f} B ({heap_per_pod / KIB:.2f} KiB), "
            f"RSS {rss_per_pod:.0f} B ({rss_per_pod / KIB:.2f} KiB)  "
            f"[goal < 2 KiB: heap {'met' if heap_per_pod < 2 * KIB else 'MISSED'}, "
            f"RSS {'met' if rss_per_pod < 2 * KIB else 'MISSED'}]"
        )
        print(
            f"  synced inventory: heap {full_heap.heap / MIB:.1f} MiB with pods vs {empty_heap.heap / MIB:.1f} MiB "
            f"without; RSS +{full.rss_delta / MIB:.1f} MiB vs +{empty.rss_delta / MIB:.1f} MiB"
        )
        beyond = (full.rss_delta - empty.rss_delta) - (full_heap.heap - empty_heap.heap)
        print(
            f"  RSS beyond the heap's growth: {beyond / MIB:.1f} MiB (allocator pools kept after decoding "
            f"LIST pages; it does not grow with the pod count, so it weighs less per pod at scale)"
        )
    print(
        f"changes: {changes.sent}/{changes.planned} sent at {changes.achieved_rate:.1f}/s "
        f"(goal rate {args.change_rate:g}/s; {changes.late_sends} sent >100 ms late), {changes.failed} failed, "
        f"{changes.unseen} never seen in the cache (within {args.lost_after:g} s)"
    )
    if changes.from_return:
        for label, values in (("from API return", changes.from_return), ("from sending", changes.from_send)):
            print(
                f"  change-to-visible {label}: p50 {pct(values, 50) * 1000:.0f} ms, "
                f"p99 {pct(values, 99) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"
            )
        api = changes.api_latency
        print(
            f"  (the PATCH calls themselves took p50 {pct(api, 50) * 1000:.0f} ms, "
            f"p99 {pct(api, 99) * 1000:.0f} ms from sending to return)"
        )
        p99 = pct(changes.from_return, 99)
        print(
            f"  goal p99 < 1 s: {'met' if p99 < 1 and not changes.unseen else 'MISSED'}; "
            f"{changes.seen_before_return} changes were visible before their API call returned; "
            f"poll interval {args.poll_ms:g} ms"
        )
    print(
        f"  Pilothouse process CPU during the change phase: {changes.cpu_percent:.1f} % of one core "
        f"over {changes.window_s:.0f} s (watches, cache, and the benchmark's poller)"
    )
    for error in changes.errors:
        print(f"  driver error: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--pods", type=int, default=50000)
    parser.add_argument("--namespaces", type=int, default=50, help="pods are spread over this many")
    parser.add_argument("--change-rate", type=float, default=100.0, help="pod changes per second")
    parser.add_argument("--change-seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent create requests")
    parser.add_argument("--max-in-flight", type=int, default=100, help="the change driver's open requests")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="how often the pod cache is polled")
    parser.add_argument("--lost-after", type=float, default=30.0, help="a change unseen this long is lost")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after a sync before measuring")
    parser.add_argument("--sync-timeout", type=float, default=900.0)
    parser.add_argument("--running-timeout", type=float, default=1800.0)
    args = parser.parse_args()
    if args.pods < 1 or args.nodes < 1 or args.change_rate <= 0 or args.namespaces < 1:
        parser.error("--pods, --nodes, --namespaces and --change-rate must be positive")
    logs.configure("WARNING")
    with tempfile.TemporaryDirectory(prefix="pilothouse-fleet-big-") as home:
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
