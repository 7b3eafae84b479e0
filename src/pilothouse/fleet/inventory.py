"""The live inventory: what exists in every managed cluster, kept current by watches.

``ClusterInventory`` is the cache of one cluster: per watched kind, a dict of
compact summaries keyed by (namespace, name), plus that kind's watch state
(synced? connected? when was the last event or bookmark?). Events are kept
as a bounded, de-duplicated history ring rather than a mirror. ``snapshot()``
reduces the cache to an immutable ``InventorySnapshot`` of counts and small
collections for the API, CLI, health and metrics code.

``FleetInventory`` runs the watches: per cluster one task that opens a
connection (credentials from the registry) and, inside it, one supervised
task per kind. A crashing watch task is logged (``inventory.watch_crashed``)
and restarted with backoff; it relists, so its cache resyncs. Clusters share
nothing but the event loop, so one unreachable or slow cluster never delays
another.

The heavy lifting is in ``kube.watching`` (list+watch, resume, relist on
410, backoff) and ``kube.summaries`` (object → summary); this module never
touches lightkube. Everything runs on the event loop; the only blocking call is
the short synchronous read of a cluster's credentials from the store when it is
added or its connection is reopened.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType, TracebackType
from typing import Any, Generic, TypeVar

import structlog

from pilothouse import errors
from pilothouse.fleet import capacity
from pilothouse.kube import summaries, watching
from pilothouse.kube.credentials import ClusterCredentials
from pilothouse.kube.summaries import (
    EventSummary,
    JobSummary,
    Key,
    Kind,
    KindSpec,
    NamespaceSummary,
    NodeSummary,
    PdbSummary,
    PodSummary,
    Summary,
    WorkloadKind,
    WorkloadSummary,
)

log = structlog.get_logger(__name__)

DEFAULT_EVENT_CAPACITY = 5_000
#: Delays before restarting a crashed watch task (the last repeats).
RESTART_BACKOFF: tuple[float, ...] = (1, 2, 5, 10, 30)
#: A watch task that ran this long before crashing starts its restart backoff from the beginning.
RESTART_RESET_SECONDS = 300.0

S = TypeVar("S", bound=Summary)
Clock = Callable[[], float]


# ----- per-kind caches -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KindState:
    """The watch state of one kind: what health code reads to tell fresh from stale."""

    kind: Kind
    synced: bool  # a complete list has been received at least once
    connected: bool  # the last list or stream attempt succeeded
    objects: int
    last_event_at: float | None  # monotonic time of the last list, event or bookmark
    last_sync_at: float | None  # monotonic time of the last complete list
    error: str | None  # the last failure, while disconnected

    def age(self, now: float) -> float | None:
        """Seconds since the watch last heard from the API server (None: never)."""
        return None if self.last_event_at is None else max(0.0, now - self.last_event_at)


class KindCache(Generic[S]):
    """The summaries of one kind in one cluster; a ``watching.WatchSink``."""

    def __init__(
        self, kind: Kind, *, clock: Clock = time.monotonic, on_synced: Callable[[], None] | None = None
    ) -> None:
        self.kind = kind
        self.items: dict[Key, S] = {}
        self.synced = False
        self.connected = False
        self.last_event_at: float | None = None
        self.last_sync_at: float | None = None
        self.error: str | None = None
        self._clock = clock
        self._on_synced = on_synced

    def on_event(self, event: watching.WatchEvent[S]) -> None:
        self.last_event_at = self._clock()
        if isinstance(event, watching.Synced):
            self._replace(event.objects)
            first = not self.synced
            self.synced = True
            self.last_sync_at = self.last_event_at
            if first and self._on_synced is not None:
                self._on_synced()
        elif isinstance(event, watching.Upserted):
            self._upsert(event.obj)
        elif isinstance(event, watching.Deleted):
            self._delete(event.obj)

    def on_connected(self) -> None:
        self.connected = True
        self.error = None

    def on_disconnected(self, error: errors.PilothouseError) -> None:
        self.connected = False
        self.error = error.message

    def state(self) -> KindState:
        return KindState(
            kind=self.kind,
            synced=self.synced,
            connected=self.connected,
            objects=len(self.items),
            last_event_at=self.last_event_at,
            last_sync_at=self.last_sync_at,
            error=self.error,
        )

    def values(self) -> list[S]:
        return list(self.items.values())

    def _replace(self, objects: Sequence[S]) -> None:
        self.items = {obj.key: obj for obj in objects}

    def _upsert(self, obj: S) -> None:
        self.items[obj.key] = obj

    def _delete(self, obj: S) -> None:
        self.items.pop(obj.key, None)


class PodCache(KindCache[PodSummary]):
    """The pods of one cluster, with running totals kept on every change, so a snapshot or
    an alert pass costs the same with 50 pods or 50,000: counts by phase, ready pods,
    pods by waiting reason (with an index of those pods), and the requests of the pods
    that hold allocatable (``fleet.capacity.holds_allocatable``)."""

    def __init__(self, *, clock: Clock = time.monotonic, on_synced: Callable[[], None] | None = None) -> None:
        super().__init__(Kind.PODS, clock=clock, on_synced=on_synced)
        self._reset()

    def _reset(self) -> None:
        self.by_phase: Counter[str] = Counter()
        self.ready = 0
        self.requested = capacity.Resources()
        self._waiting: dict[str, dict[Key, PodSummary]] = {}

    def waiting(self, reason: str) -> list[PodSummary]:
        """The pods whose containers wait for ``reason`` (e.g. CrashLoopBackOff)."""
        return list(self._waiting.get(reason, {}).values())

    def waiting_counts(self) -> Counter[str]:
        return Counter({reason: len(pods) for reason, pods in self._waiting.items() if pods})

    def _count(self, pod: PodSummary, sign: int) -> None:
        self.by_phase[pod.phase] += sign
        if self.by_phase[pod.phase] == 0:
            del self.by_phase[pod.phase]
        self.ready += sign * pod.ready
        if capacity.holds_allocatable(pod):
            request = capacity.requests_of(pod)
            self.requested = capacity.Resources(
                self.requested.cpu_millicores + sign * request.cpu_millicores,
                self.requested.memory_bytes + sign * request.memory_bytes,
            )
        if pod.waiting_reason:
            index = self._waiting.setdefault(pod.waiting_reason, {})
            if sign > 0:
                index[pod.key] = pod
            else:
                index.pop(pod.key, None)
                if not index:
                    del self._waiting[pod.waiting_reason]

    def _replace(self, objects: Sequence[PodSummary]) -> None:
        super()._replace(objects)
        self._reset()
        for pod in self.items.values():
            self._count(pod, +1)

    def _upsert(self, obj: PodSummary) -> None:
        old = self.items.get(obj.key)
        if old is not None:
            self._count(old, -1)
        super()._upsert(obj)
        self._count(obj, +1)

    def _delete(self, obj: PodSummary) -> None:
        old = self.items.pop(obj.key, None)
        if old is not None:
            self._count(old, -1)


class EventRing(KindCache[EventSummary]):
    """Recent Events: a history, not a mirror. Updates of an event (its count growing) move
    it to the newest end; the oldest are dropped beyond ``capacity``. Events that Kubernetes
    deletes (their TTL, one hour by default) stay; a relist merges into the ring.

    The ring also remembers which events changed since ``drain_changed`` last ran (the keys
    only, and only of events still in the ring, so it stays bounded by ``capacity`` when
    nobody drains it); ``fleet.event_log`` drains them to persist just what changed."""

    def __init__(
        self,
        *,
        capacity: int = DEFAULT_EVENT_CAPACITY,
        clock: Clock = time.monotonic,
        on_synced: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(Kind.EVENTS, clock=clock, on_synced=on_synced)
        if capacity < 1:
            raise ValueError("the event ring needs a capacity of at least 1")
        self.capacity = capacity
        self.items: OrderedDict[Key, EventSummary] = OrderedDict()
        self._changed: set[Key] = set()

    def drain_changed(self) -> list[EventSummary]:
        """The events added or changed since the last drain, forgetting which they were."""
        changed = [self.items[key] for key in self._changed]  # every changed key is in the ring
        self._changed.clear()
        return changed

    def mark_changed(self, events: Iterable[EventSummary]) -> None:
        """Hand drained events back (their save failed): the next drain returns them again,
        as they are by then (an event that left the ring meanwhile is not returned)."""
        self._changed.update(e.key for e in events if e.key in self.items)

    def _replace(self, objects: Sequence[EventSummary]) -> None:
        for obj in sorted(objects, key=_event_order):
            self._upsert(obj)

    def _upsert(self, obj: EventSummary) -> None:
        if self.items.get(obj.key) != obj:  # a relist re-sends every event: only changes count
            self._changed.add(obj.key)
        self.items[obj.key] = obj
        self.items.move_to_end(obj.key)
        while len(self.items) > self.capacity:
            dropped, _ = self.items.popitem(last=False)
            self._changed.discard(dropped)

    def _delete(self, obj: EventSummary) -> None:
        pass  # kept as history; bounded by capacity


def _event_order(event: EventSummary) -> tuple[float, str]:
    stamp = event.last_timestamp.timestamp() if event.last_timestamp is not None else 0.0
    return stamp, event.name


# ----- one cluster -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InventorySnapshot:
    """An immutable summary of one cluster's cache at ``taken_at`` (monotonic)."""

    cluster: str
    taken_at: float
    nodes: tuple[NodeSummary, ...]
    nodes_total: int
    nodes_ready: int
    nodes_unschedulable: int
    kubelet_versions: Mapping[str, int]  # version -> nodes
    namespaces: int
    pods_total: int
    pods_ready: int
    pods_by_phase: Mapping[str, int]
    pods_waiting: Mapping[str, int]  # waiting reason (CrashLoopBackOff, ...) -> pods
    allocatable: capacity.Resources  # summed over every node
    requested: capacity.Resources  # by pods bound to a node and not finished
    workloads: tuple[WorkloadSummary, ...]
    workloads_available: int
    jobs: tuple[JobSummary, ...]
    pdbs: tuple[PdbSummary, ...]
    events_cached: int
    last_event_at: datetime | None  # the newest Event's timestamp
    watches: Mapping[Kind, KindState]

    @property
    def synced(self) -> bool:
        return all(w.synced for w in self.watches.values())

    @property
    def connected(self) -> bool:
        return all(w.connected for w in self.watches.values())

    @property
    def disconnected_kinds(self) -> tuple[Kind, ...]:
        return tuple(kind for kind, w in self.watches.items() if not w.connected)

    def workload(self, kind: WorkloadKind, namespace: str, name: str) -> WorkloadSummary | None:
        return next(
            (w for w in self.workloads if w.kind == kind and w.namespace == namespace and w.name == name),
            None,
        )

    def node(self, name: str) -> NodeSummary | None:
        return next((n for n in self.nodes if n.name == name), None)


def _frozen_counts(counts: Counter[str]) -> Mapping[str, int]:
    return MappingProxyType(dict(sorted(counts.items())))


class ClusterInventory:
    """The cache of one cluster: one ``KindCache`` per kind, and queries over them."""

    def __init__(
        self,
        name: str,
        *,
        kinds: Iterable[Kind] = tuple(Kind),
        event_capacity: int = DEFAULT_EVENT_CAPACITY,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.watched: tuple[Kind, ...] = tuple(dict.fromkeys(kinds))
        self._clock = clock
        self._synced = asyncio.Event()

        def cache(kind: Kind) -> KindCache[Any]:
            return KindCache(kind, clock=clock, on_synced=self._check_synced)

        self.nodes: KindCache[NodeSummary] = cache(Kind.NODES)
        self.namespaces: KindCache[NamespaceSummary] = cache(Kind.NAMESPACES)
        self.pods = PodCache(clock=clock, on_synced=self._check_synced)
        self.deployments: KindCache[WorkloadSummary] = cache(Kind.DEPLOYMENTS)
        self.statefulsets: KindCache[WorkloadSummary] = cache(Kind.STATEFULSETS)
        self.daemonsets: KindCache[WorkloadSummary] = cache(Kind.DAEMONSETS)
        self.jobs: KindCache[JobSummary] = cache(Kind.JOBS)
        self.pdbs: KindCache[PdbSummary] = cache(Kind.PODDISRUPTIONBUDGETS)
        self.events = EventRing(capacity=event_capacity, clock=clock, on_synced=self._check_synced)

    def caches(self) -> dict[Kind, KindCache[Any]]:
        """Every kind's cache, watched or not."""
        return {
            Kind.NODES: self.nodes,
            Kind.NAMESPACES: self.namespaces,
            Kind.PODS: self.pods,
            Kind.DEPLOYMENTS: self.deployments,
            Kind.STATEFULSETS: self.statefulsets,
            Kind.DAEMONSETS: self.daemonsets,
            Kind.JOBS: self.jobs,
            Kind.PODDISRUPTIONBUDGETS: self.pdbs,
            Kind.EVENTS: self.events,
        }

    # -- queries --

    def pods_in(self, namespace: str | None = None) -> list[PodSummary]:
        return [p for p in self.pods.items.values() if namespace is None or p.namespace == namespace]

    def pods_waiting(self, reason: str) -> list[PodSummary]:
        """Pods waiting for ``reason`` (e.g. CrashLoopBackOff), from an index: no scan."""
        return self.pods.waiting(reason)

    def events_about(
        self, *, namespace: str | None = None, kind: str | None = None, name: str | None = None
    ) -> list[EventSummary]:
        """Cached events, oldest first, filtered by the involved object."""
        return [
            e
            for e in self.events.items.values()
            if (namespace is None or e.namespace == namespace)
            and (kind is None or e.involved_kind == kind)
            and (name is None or e.involved_name == name)
        ]

    def snapshot(self) -> InventorySnapshot:
        nodes = tuple(sorted(self.nodes.items.values(), key=lambda n: n.name))
        pods = self.pods
        workloads = tuple(
            sorted(
                [
                    *self.deployments.items.values(),
                    *self.statefulsets.items.values(),
                    *self.daemonsets.items.values(),
                ],
                key=lambda w: (w.namespace, w.name, w.kind.value),
            )
        )
        stamps = [e.last_timestamp for e in self.events.items.values() if e.last_timestamp is not None]
        caches = self.caches()
        return InventorySnapshot(
            cluster=self.name,
            taken_at=self._clock(),
            nodes=nodes,
            nodes_total=len(nodes),
            nodes_ready=sum(n.ready for n in nodes),
            nodes_unschedulable=sum(n.unschedulable for n in nodes),
            kubelet_versions=_frozen_counts(Counter(n.kubelet_version for n in nodes)),
            namespaces=len(self.namespaces.items),
            pods_total=len(pods.items),
            pods_ready=pods.ready,
            pods_by_phase=_frozen_counts(pods.by_phase),
            pods_waiting=_frozen_counts(pods.waiting_counts()),
            allocatable=capacity.allocatable_of(nodes),
            requested=pods.requested,
            workloads=workloads,
            workloads_available=sum(w.fully_available for w in workloads),
            jobs=tuple(sorted(self.jobs.items.values(), key=lambda j: j.key)),
            pdbs=tuple(sorted(self.pdbs.items.values(), key=lambda p: p.key)),
            events_cached=len(self.events.items),
            last_event_at=max(stamps, default=None),
            watches=MappingProxyType({kind: caches[kind].state() for kind in self.watched}),
        )

    # -- state --

    def mark_disconnected(self, error: errors.PilothouseError) -> None:
        """Every watched kind is cut off (the connection itself could not be opened)."""
        caches = self.caches()
        for kind in self.watched:
            caches[kind].on_disconnected(error)

    async def wait_synced(self, timeout: float) -> InventorySnapshot:
        """Wait until every watched kind has listed once; ``TimeoutError`` after ``timeout``."""
        async with asyncio.timeout(timeout):
            await self._synced.wait()
        return self.snapshot()

    def _check_synced(self) -> None:
        caches = self.caches()
        if all(caches[kind].synced for kind in self.watched):
            self._synced.set()


# ----- the fleet -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Binding(Generic[S]):
    """One kind's spec and the cache its watch feeds."""

    spec: KindSpec[S]
    cache: KindCache[S]

    async def run(self, connection: watching.Connection, settings: watching.WatchSettings) -> None:
        await watching.watch(connection, self.spec, self.cache, settings=settings)


@dataclass
class _Running:
    inventory: ClusterInventory
    task: asyncio.Task[None]


class FleetInventory:
    """Watches every cluster it is given, each independently; see the module docstring.

    ``credentials`` maps a cluster name to its credentials, e.g.
    ``FleetInventory(platform.clusters.credentials)``. Use ``async with`` (or ``stop()``)
    so no watch task outlives it.
    """

    def __init__(
        self,
        credentials: Callable[[str], ClusterCredentials],
        *,
        specs: Sequence[KindSpec[Any]] = summaries.ALL_SPECS,
        settings: watching.WatchSettings | None = None,
        event_capacity: int = DEFAULT_EVENT_CAPACITY,
        restart_backoff: tuple[float, ...] = RESTART_BACKOFF,
    ) -> None:
        self._credentials = credentials
        self._specs = tuple(specs)
        self._settings = settings or watching.WatchSettings()
        self._event_capacity = event_capacity
        self._restart_backoff = restart_backoff
        self._clusters: dict[str, _Running] = {}

    async def __aenter__(self) -> FleetInventory:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- lifecycle --

    async def start(self, names: Iterable[str]) -> None:
        """Watch each cluster; one that cannot be watched (no credentials) is logged and skipped."""
        for name in names:
            try:
                await self.ensure(name)
            except errors.PilothouseError as exc:
                log.warning("inventory.start_failed", cluster=name, error=exc.message, code=exc.code)

    async def ensure(self, name: str) -> ClusterInventory:
        """Watch ``name`` if not yet watched; return its inventory at once (it syncs in the
        background; see ``ClusterInventory.wait_synced``). Raises ``NotFound`` for an unknown
        cluster and ``KubeconfigInvalid`` for unusable stored credentials."""
        running = self._clusters.get(name)
        if running is not None and not running.task.done():
            return running.inventory
        creds = self._credentials(name)
        inventory = ClusterInventory(
            name, kinds=[spec.kind for spec in self._specs], event_capacity=self._event_capacity
        )
        task = asyncio.create_task(self._run_cluster(inventory, creds), name=f"inventory:{name}")
        self._clusters[name] = _Running(inventory=inventory, task=task)
        log.info("inventory.watching", cluster=name, kinds=len(self._specs))
        return inventory

    async def remove(self, name: str) -> None:
        """Stop watching ``name`` and drop its cache; a no-op if it is not watched."""
        running = self._clusters.pop(name, None)
        if running is None:
            return
        running.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running.task
        log.info("inventory.removed", cluster=name)

    async def stop(self) -> None:
        """Stop every watch."""
        await asyncio.gather(*(self.remove(name) for name in list(self._clusters)))

    # -- reads --

    def names(self) -> list[str]:
        return sorted(self._clusters)

    def inventory(self, name: str) -> ClusterInventory:
        running = self._clusters.get(name)
        if running is None:
            raise errors.NotFound(
                f"the inventory does not watch a cluster named {name!r}",
                hint="the cluster may not exist or may have been removed",
            )
        return running.inventory

    def snapshot(self, name: str) -> InventorySnapshot:
        return self.inventory(name).snapshot()

    async def wait_synced(self, name: str, *, timeout: float = 60.0) -> InventorySnapshot:
        return await self.inventory(name).wait_synced(timeout)

    # -- tasks --

    def _bindings(self, inventory: ClusterInventory) -> list[_Binding[Any]]:
        caches = inventory.caches()
        return [_Binding(spec=spec, cache=caches[spec.kind]) for spec in self._specs]

    async def _run_cluster(self, inventory: ClusterInventory, creds: ClusterCredentials) -> None:
        """Open the cluster's connection and run its watches; reopen it if opening fails."""
        name = inventory.name
        structlog.contextvars.bind_contextvars(cluster=name)  # this task and its children only
        attempt = 0
        while True:
            try:
                async with (
                    watching.connect(creds, timeout=self._settings.request_timeout) as connection,
                    asyncio.TaskGroup() as group,
                ):
                    for binding in self._bindings(inventory):
                        group.create_task(
                            self._supervise(name, connection, binding),
                            name=f"inventory:{name}:{binding.spec.kind}",
                        )
            except errors.PilothouseError as exc:
                log.warning(
                    "inventory.connect_failed",
                    cluster=name,
                    error=exc.message,
                    code=exc.code,
                    attempt=attempt,
                )
                inventory.mark_disconnected(exc)
            except Exception as exc:  # a bug: log it and start over, never take the fleet down
                log.error("inventory.cluster_crashed", cluster=name, error=_describe(exc), attempt=attempt)
                inventory.mark_disconnected(
                    errors.PilothouseError(f"the inventory task crashed: {_describe(exc)}")
                )
            await asyncio.sleep(watching.backoff_delay(attempt, self._restart_backoff))
            attempt += 1
            with contextlib.suppress(errors.PilothouseError):  # credentials may have been rotated
                creds = self._credentials(name)

    async def _supervise(self, cluster: str, connection: watching.Connection, binding: _Binding[Any]) -> None:
        """Run one kind's watch forever: log and restart it (it relists) whenever it crashes."""
        kind = binding.spec.kind.value
        crashes = 0
        while True:
            started = time.monotonic()
            try:
                await binding.run(connection, self._settings)
            except Exception as exc:
                if time.monotonic() - started > RESTART_RESET_SECONDS:
                    crashes = 0
                delay = watching.backoff_delay(crashes, self._restart_backoff)
                crashes += 1
                log.error(
                    "inventory.watch_crashed",
                    cluster=cluster,
                    kind=kind,
                    error=_describe(exc),
                    restarts=crashes,
                    restart_in=round(delay, 1),
                )
                binding.cache.on_disconnected(
                    errors.PilothouseError(f"the {kind} watch crashed: {_describe(exc)}")
                )
                await asyncio.sleep(delay)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:512]
