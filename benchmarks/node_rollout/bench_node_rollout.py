"""Benchmark: a node rollout of N nodes carrying M pods under PodDisruptionBudgets, Pilothouse
against a sequential ``kubectl drain`` of the same nodes, in the same run.

Two identical local clusters are built one after the other (Kubernetes 1.36.3, ``--nodes``
kwok nodes whose status reports kubelet v1.35.4, ``--pods`` pods in Deployments of
``--replicas`` spread over ``--namespaces`` namespaces; a third of the Deployments have a
PodDisruptionBudget ``minAvailable: 80%``, a third ``maxUnavailable: 1``, a third none).
Every node is then replaced by a v1.36.3 node:

- **baseline** (the first cluster): what an operator's script does with ``kubectl``, one node
  after the other: create one new node and wait until it is Ready, then ``kubectl drain`` the
  old node (cordon; evict every pod of the node at once, each eviction retried every 5 s on
  429, as kubectl does; wait for each evicted pod to be gone, polling every second, as
  kubectl does), then delete the old node. There is no kubectl binary on this machine, so the
  drain is re-implemented here with the same API calls (``kube.drain``) and kubectl's timings;
- **pilothouse** (the second cluster): ``Rollouts.start`` + ``Rollouts.run``, the durable
  operation ``pilothouse rollout start`` runs, with ``--max-surge`` and ``--max-unavailable``.

For each phase it prints the wall time (from the first change to the last old node deleted),
the evictions the API server accepted and refused (429), read from its audit log, and the
result of a PodDisruptionBudget watcher: one watch on all pods, which keeps per Deployment
the number of Ready, non-terminating pods and records every moment one fell below what its
budget promises (``minAvailable``, or replicas - ``maxUnavailable``). Cluster creation and
workload setup are not timed. Figures are printed, not asserted; README.md records them.

    .venv/bin/python benchmarks/node_rollout/bench_node_rollout.py [--nodes 500] [--pods 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import platform as platform_mod
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from lightkube import AsyncClient
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import Container, PodSpec, PodTemplateSpec, ResourceRequirements
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.models.policy_v1 import PodDisruptionBudgetSpec
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, Node, Pod, ServiceAccount
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType

from pilothouse import logs
from pilothouse.cli.output import progress_bars
from pilothouse.fleet import requests
from pilothouse.kube import client as kube_client
from pilothouse.kube import drain
from pilothouse.kube import nodes as kube_nodes
from pilothouse.platform import Platform
from pilothouse.progress import ProgressEvent, ProgressSink
from pilothouse.providers.local.provider import LocalRuntime
from pilothouse.settings import load_settings

CONTROL_PLANE = "1.36.3"
OLD, NEW = "v1.35.4", f"v{CONTROL_PLANE}"
ADMIN_USER = "pilothouse-admin"
KUBECTL_RETRY_SECONDS = 5.0  # kubectl drain: "error when evicting pods/… (will retry after 5s)"
KUBECTL_POLL_SECONDS = 1.0  # kubectl drain waits for deletion polling every second


# ----- the workload and its budgets --------------------------------------------------------------


@dataclass(frozen=True)
class App:
    namespace: str
    name: str
    replicas: int
    budget: dict[str, int | str] | None  # {"minAvailable": "80%"} or {"maxUnavailable": 1}

    @property
    def required(self) -> int:
        """Ready pods the budget promises (the disruption controller's rounding: up)."""
        if self.budget is None:
            return 0
        if "minAvailable" in self.budget:
            return _scaled(self.budget["minAvailable"], self.replicas)
        return self.replicas - _scaled(self.budget["maxUnavailable"], self.replicas)


def _scaled(value: int | str, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def plan_apps(pods: int, replicas: int, namespaces: int) -> list[App]:
    count = max(1, math.ceil(pods / replicas))
    apps = []
    left = pods
    for i in range(count):
        size = min(replicas, left)
        left -= size
        kinds: list[dict[str, int | str] | None] = [{"minAvailable": "80%"}, {"maxUnavailable": 1}, None]
        budget = kinds[i % 3]
        apps.append(App(f"bench-{i % namespaces:03d}", f"app-{i:04d}", size, budget))
    return apps


async def create_workloads(client: AsyncClient, apps: list[App]) -> None:
    for namespace in sorted({a.namespace for a in apps}):
        with contextlib.suppress(Exception):
            await client.create(Namespace(metadata=ObjectMeta(name=namespace)))
        while True:  # the ServiceAccount admission plugin needs the namespace's default account
            try:
                await client.get(ServiceAccount, "default", namespace=namespace)
                break
            except Exception:  # not there yet
                await asyncio.sleep(0.2)
    gate = asyncio.Semaphore(16)

    async def create(app: App) -> None:
        labels = {"app": app.name}
        async with gate:
            await client.create(
                Deployment(
                    metadata=ObjectMeta(name=app.name, namespace=app.namespace),
                    spec=DeploymentSpec(
                        replicas=app.replicas,
                        selector=LabelSelector(matchLabels=labels),
                        template=PodTemplateSpec(
                            metadata=ObjectMeta(labels=labels),
                            spec=PodSpec(
                                automountServiceAccountToken=False,
                                enableServiceLinks=False,
                                containers=[
                                    Container(
                                        name="app",
                                        image="registry.invalid/bench/app:1.0",
                                        resources=ResourceRequirements(
                                            requests={"cpu": "10m", "memory": "16Mi"}
                                        ),
                                    )
                                ],
                            ),
                        ),
                    ),
                )
            )
            if app.budget is not None:
                await client.create(
                    PodDisruptionBudget(
                        metadata=ObjectMeta(name=app.name, namespace=app.namespace),
                        spec=PodDisruptionBudgetSpec(
                            selector=LabelSelector(matchLabels=labels),
                            minAvailable=app.budget.get("minAvailable"),
                            maxUnavailable=app.budget.get("maxUnavailable"),
                        ),
                    )
                )

    await asyncio.gather(*(create(a) for a in apps))


async def wait_available(client: AsyncClient, apps: list[App], timeout: float) -> float:
    started = time.monotonic()
    want = {(a.namespace, a.name): a.replicas for a in apps}
    while True:
        ready = {
            (d.metadata.namespace, d.metadata.name): d.status.availableReplicas or 0
            async for d in client.list(Deployment, namespace="*")
            if d.status is not None and d.metadata is not None
        }
        short = sum(max(0, n - ready.get(k, 0)) for k, n in want.items())
        if short == 0:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{short} pods still not available after {timeout:.0f} s")
        await asyncio.sleep(1.0)


# ----- the budget watcher ------------------------------------------------------------------------


def _healthy(pod: Pod) -> bool:
    status = pod.status
    return bool(
        pod.metadata is not None
        and pod.metadata.deletionTimestamp is None
        and status is not None
        and status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])
    )


@dataclass
class BudgetWatcher:
    """One watch on every pod; per Deployment the count of Ready, non-terminating pods, kept
    incrementally; a violation is any moment a count is below what its budget promises."""

    client: AsyncClient
    apps: list[App]
    state: dict[tuple[str, str], tuple[str, bool]] = field(default_factory=dict)  # pod -> (app, healthy)
    counts: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    events: int = 0
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.required = {a.name: a.required for a in self.apps if a.budget is not None}
        self.margin = dict.fromkeys(self.required, 10**9)

    def _record(self, kind: str, pod: Pod) -> str:
        meta = pod.metadata or ObjectMeta()
        key = (meta.namespace or "", meta.name or "")
        app = str((meta.labels or {}).get("app", ""))
        before = self.state.pop(key, None)
        if before is not None and before[1]:
            self.counts[before[0]] -= 1
        if kind != "DELETED":
            healthy = _healthy(pod)
            self.state[key] = (app, healthy)
            if healthy:
                self.counts[app] += 1
        return app

    def _check(self, app: str, cause: str) -> None:
        if app in self.required:
            margin = self.counts[app] - self.required[app]
            self.margin[app] = min(self.margin[app], margin)
            if margin < 0:
                self.violations.append(f"{app}: {self.counts[app]} < {self.required[app]} after {cause}")

    async def start(self) -> None:
        lister = self.client.list(Pod, namespace="*", chunk_size=500)
        async for pod in lister:
            self._record("ADDED", pod)
        for app in self.required:
            self._check(app, "the initial list")
        self.task = asyncio.create_task(self._run(str(lister.resourceVersion)))

    async def _run(self, version: str) -> None:
        async for kind, pod in self.client.watch(Pod, namespace="*", resource_version=version):
            self.events += 1
            self._check(self._record(kind, pod), f"{kind} {pod.metadata.name if pod.metadata else ''}")

    async def stop(self) -> None:
        assert self.task is not None
        if self.task.done():
            self.task.result()  # a dead watch would have missed events
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


# ----- the two ways to replace the nodes --------------------------------------------------------


async def kubectl_drain(kube: drain.DrainClient, node: str) -> None:
    """``kubectl drain NODE --ignore-daemonsets``: cordon, evict every pod concurrently (retry
    every 5 s on 429), wait for each evicted pod to be gone (polled every second)."""
    await kube.cordon(node, by="kubectl")

    async def evict_and_wait(pod: drain.PodState) -> None:
        while True:
            outcome = await kube.evict(pod)
            if outcome.result is drain.EvictionResult.BLOCKED:
                await asyncio.sleep(KUBECTL_RETRY_SECONDS)
                continue
            if outcome.result is drain.EvictionResult.REFUSED:
                raise RuntimeError(f"eviction of {pod.key} refused: {outcome.message}")
            break
        while True:
            current = await kube.pod(pod.namespace, pod.name)
            if current is None or current.uid != pod.uid:
                return
            await asyncio.sleep(KUBECTL_POLL_SECONDS)

    pods = [p for p in await kube.pods_on([node]) if p.owner_kind != "DaemonSet" and not p.mirror]
    await asyncio.gather(*(evict_and_wait(p) for p in pods))


async def baseline(kube: drain.DrainClient, old: list[str], progress: ProgressSink) -> None:
    taken = {n.name for n in await kube.nodes()}
    fresh = (kube_nodes.simulated_node_name(i) for i in range(10**6))
    for done, node in enumerate(old):
        progress(ProgressEvent("baseline", "nodes replaced one by one", done, len(old)))
        name = next(n for n in fresh if n not in taken)
        taken.add(name)
        await kube.create_node(name, kubelet_version=NEW)
        while True:
            state = await kube.node(name)
            if state is not None and state.ready:
                break
            await asyncio.sleep(0.2)
        await kubectl_drain(kube, node)
        await kube.delete_node(node)
    progress(ProgressEvent("baseline", "nodes replaced one by one", len(old), len(old)))


# ----- one phase ---------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    name: str
    seconds: float
    nodes_replaced: int
    evictions: int
    refused_429: int
    violations: int
    lowest_margin: int | None
    pods_ready_after: bool
    setup_seconds: float
    detail: str = ""


def audit_counts(runtime: LocalRuntime) -> tuple[int, int]:
    accepted = refused = 0
    for path in runtime.layout.logs.glob("audit*.log"):
        with path.open() as lines:
            for line in lines:
                if '"eviction"' not in line:
                    continue
                entry = json.loads(line)
                ref = entry.get("objectRef", {})
                if entry["user"]["username"] != ADMIN_USER or ref.get("subresource") != "eviction":
                    continue
                code = entry.get("responseStatus", {}).get("code", 0)
                accepted += code == 201
                refused += code == 429
    return accepted, refused


async def old_cluster(platform: Platform, name: str, args: argparse.Namespace) -> LocalRuntime:
    record = await platform.clusters.create_local(
        requests.parse(requests.CreateLocalCluster, name=name, nodes=args.nodes, version=CONTROL_PLANE)
    )
    async with kube_client.open_client(platform.clusters.credentials(name), timeout=60) as client:
        gate = asyncio.Semaphore(32)

        async def age(node: str) -> None:
            async with gate:
                patch = {"status": {"nodeInfo": {"kubeletVersion": OLD}}}
                await client.patch(Node.Status, node, patch, patch_type=PatchType.MERGE)

        names = [n.metadata.name async for n in client.list(Node) if n.metadata and n.metadata.name]
        await asyncio.gather(*(age(n) for n in names))
    return LocalRuntime.from_dict(record.runtime)


async def run_phase(platform: Platform, phase: str, args: argparse.Namespace) -> PhaseResult:
    name = f"rollout-{phase}"
    setup_started = time.monotonic()
    runtime = await old_cluster(platform, name, args)
    apps = plan_apps(args.pods, args.replicas, args.namespaces)
    creds = platform.clusters.credentials(name)
    try:
        async with kube_client.open_client(creds, timeout=60) as client:
            await create_workloads(client, apps)
            await wait_available(client, apps, timeout=args.ready_timeout)
            setup = time.monotonic() - setup_started
            print(f"[{phase}] cluster and {args.pods} pods ready in {setup:.1f} s", flush=True)
            watcher = BudgetWatcher(client, apps)
            await watcher.start()
            kube = drain.DrainClient(client, creds)
            old = sorted(n.name for n in await kube.nodes())
            detail = ""
            started = time.monotonic()
            with progress_bars() as sink:
                if phase == "baseline":
                    await baseline(kube, old, sink)
                else:
                    record = await platform.rollouts.start(
                        name, max_surge=args.max_surge, max_unavailable=args.max_unavailable
                    )
                    done = await platform.rollouts.run(record.id, progress=sink)
                    detail = f"{len(record.spec['batches'])} batches, {done.phase}: {done.message}"
            seconds = time.monotonic() - started
            await asyncio.sleep(2)  # let the watcher see the last events
            await watcher.stop()
            left = [n for n in await kube.nodes() if n.name in old]
            ready_after = True
            try:
                await wait_available(client, apps, timeout=60)
            except RuntimeError:
                ready_after = False
        accepted, refused = audit_counts(runtime)
        return PhaseResult(
            name=phase,
            seconds=seconds,
            nodes_replaced=len(old) - len(left),
            evictions=accepted,
            refused_429=refused,
            violations=len(watcher.violations),
            lowest_margin=min(watcher.margin.values()) if watcher.margin else None,
            pods_ready_after=ready_after,
            setup_seconds=setup,
            detail=detail,
        )
    finally:
        await platform.clusters.delete(name)


async def main(args: argparse.Namespace) -> None:
    logs.configure("WARNING")
    platform = Platform.open(load_settings())
    results = []
    try:
        for phase in ("baseline", "pilothouse"):
            results.append(await run_phase(platform, phase, args))
    finally:
        platform.close()
    base, ours = results
    print()
    print(f"node rollout: {args.nodes} nodes, {args.pods} pods in Deployments of {args.replicas}")
    print(
        f"machine: {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.1f} GiB, "
        f"{platform_mod.system()} {platform_mod.release()}, Python {platform_mod.python_version()}, "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.1f}"
    )
    header = f"{'phase':<11} {'seconds':>8} {'nodes':>6} {'evicted':>8} {'429s':>6} {'violations':>10} {'min margin':>10}"
    print(header)
    for r in results:
        print(
            f"{r.name:<11} {r.seconds:>8.1f} {r.nodes_replaced:>6} {r.evictions:>8} {r.refused_429:>6} "
            f"{r.violations:>10} {r.lowest_margin!s:>10}"
            + ("" if r.pods_ready_after else "  (pods NOT all ready)")
        )
    print(f"pilothouse: maxSurge {args.max_surge}, maxUnavailable {args.max_unavailable}; {ours.detail}")
    print(
        f"speed-up: {base.seconds / ours.seconds:.2f}x (baseline {base.seconds:.1f} s / pilothouse {ours.seconds:.1f} s)"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--replicas", type=int, default=20, help="pods per Deployment")
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--max-surge", default="10%")
    parser.add_argument("--max-unavailable", default="0")
    parser.add_argument("--ready-timeout", type=float, default=900.0)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    home = Path(tempfile.mkdtemp(prefix="pilothouse-rollout-bench-"))
    os.environ.update(
        {
            "PILOTHOUSE_DATA_DIR": str(home / "data"),
            "PILOTHOUSE_CONFIG_DIR": str(home / "config"),
            "PILOTHOUSE_CONFIG": str(home / "config" / "config.yaml"),
        }
    )
    try:
        asyncio.run(main(arguments))
    finally:
        for process in psutil.process_iter(["pid", "cmdline"]):  # last resort: nothing outlives the run
            if str(home) in " ".join(process.info["cmdline"] or []) and process.pid != os.getpid():
                with contextlib.suppress(psutil.Error):
                    process.kill()
        shutil.rmtree(home, ignore_errors=True)
