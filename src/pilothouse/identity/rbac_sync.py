"""Keep each local cluster's RBAC in step with Pilothouse's roles: level-triggered, one pass at a time.

Owns the I/O side of ``identity.rbac_plan``: for a cluster, read Pilothouse's
role bindings (and the grants of live user-owned API tokens) from
``identity.accounts``, plan the fixed set of managed objects, read what the
cluster has (objects labelled ``app.kubernetes.io/managed-by=pilothouse``,
through ``kube.rbac``/lightkube), server-side apply what is missing or
different and delete what is no longer wanted (a RoleBinding whose last
namespace grant went). Every pass starts from scratch, so a crash or an
unreachable cluster is repaired by a later pass.

``sync_once`` is the background job (``reconcile.loop``, leader only): every
few seconds it re-plans every Running local cluster, and contacts a cluster
only when its plan changed since the last successful sync (a binding was
added or removed, even by another process such as the CLI) or when
``resync`` has passed (to repair drift, e.g. someone deleting a managed
object). ``identity.cluster_access`` also syncs a cluster right before it
hands out credentials for it.

Only local clusters are synced: Pilothouse can issue credentials only for
clusters whose CA it holds, so groups in an imported cluster would bind
nobody. The cluster registry is passed in as a narrow ``ClusterDirectory``
(``fleet.registry.ClusterRegistry`` fits it): identity and fleet are
independent layers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from pilothouse import errors
from pilothouse.identity import rbac_plan
from pilothouse.identity.accounts import Accounts
from pilothouse.identity.policy import Binding, Grant, Role, Scope, ScopeKind, SubjectKind
from pilothouse.kube import rbac as kube_rbac
from pilothouse.kube.credentials import ClusterCredentials
from pilothouse.store.clusters import ClusterRecord
from pilothouse.vocabulary import ClusterPhase, DesiredState, ProviderKind

log = structlog.get_logger(__name__)

#: How often a cluster whose plan did not change is checked anyway (drift repair).
RESYNC = timedelta(minutes=1)
#: Clusters synced at the same time.
CONCURRENCY = 8


class ClusterDirectory(Protocol):
    """What the sync needs of the cluster registry."""

    def clusters(self) -> list[ClusterRecord]: ...

    def get(self, name: str) -> ClusterRecord: ...

    def credentials(self, name: str) -> ClusterCredentials: ...


def policy_bindings(accounts: Accounts) -> list[Binding]:
    """Every stored role binding as a policy ``Binding`` (one naming an unknown role grants nothing)."""
    found = []
    for record in accounts.list_bindings():
        try:
            found.append(
                Binding(
                    SubjectKind(record.subject_kind),
                    record.subject,
                    Role(record.role),
                    Scope.of(record.cluster or None, record.namespace or None),
                )
            )
        except ValueError:
            continue
    return found


def live_token_grants(accounts: Accounts, now: datetime) -> list[Grant]:
    """The grants of live API tokens owned by users (only users get cluster credentials)."""
    found = []
    for info in accounts.list_tokens():
        if info.owner is None or info.revoked_at is not None:
            continue
        if info.expires_at is not None and info.expires_at <= now:
            continue
        for g in info.grants:
            try:
                found.append(Grant(Role(g.role), Scope.of(g.cluster or None, g.namespace or None)))
            except ValueError:
                continue
    return found


def syncable(record: ClusterRecord) -> bool:
    """A local cluster that should be running and is: the ones whose RBAC is kept in step."""
    return (
        record.provider == ProviderKind.LOCAL
        and record.desired_state == DesiredState.RUNNING
        and record.phase == ClusterPhase.RUNNING
    )


@dataclass(frozen=True)
class RbacSyncResult:
    cluster: str
    applied: tuple[str, ...]
    deleted: tuple[str, ...]
    waiting: tuple[str, ...]  # namespaces named by grants that the cluster does not have
    unchanged: int

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.deleted)


def _fingerprint(manifests: Sequence[rbac_plan.Manifest]) -> str:
    return hashlib.sha256(json.dumps(manifests, sort_keys=True).encode()).hexdigest()


class RbacSync:
    def __init__(
        self,
        clusters: ClusterDirectory,
        accounts: Accounts,
        *,
        clock: Callable[[], datetime],
        resync: timedelta = RESYNC,
    ) -> None:
        self.clusters = clusters
        self.accounts = accounts
        self.clock = clock
        self.resync = resync
        #: cluster → (fingerprint of the plan last applied, monotonic time of that sync)
        self._synced: dict[str, tuple[str, float]] = {}

    def desired(self, cluster: str) -> tuple[rbac_plan.Manifest, ...]:
        """The managed objects ``cluster`` should have now."""
        return self._desired_all([cluster])[cluster]

    def _desired_all(self, clusters: Iterable[str]) -> dict[str, tuple[rbac_plan.Manifest, ...]]:
        names = list(clusters)
        if not names:
            return {}
        # Only namespace grants shape a cluster's plan: index them by cluster once (a fleet of
        # 1,000 clusters and 100,000 bindings is one pass over the bindings, not 1,000).
        bindings: dict[str, list[Binding]] = {}
        for binding in policy_bindings(self.accounts):
            if binding.scope.kind is ScopeKind.NAMESPACE:
                bindings.setdefault(binding.scope.cluster, []).append(binding)
        tokens: dict[str, list[Grant]] = {}
        for grant in live_token_grants(self.accounts, self.clock()):
            if grant.scope.kind is ScopeKind.NAMESPACE:
                tokens.setdefault(grant.scope.cluster, []).append(grant)
        return {
            name: rbac_plan.plan_cluster_rbac(
                rbac_plan.compute_rbac_grants(bindings.get(name, []), name, token_grants=tokens.get(name, []))
            )
            for name in names
        }

    async def sync_cluster(
        self, name: str, desired: Sequence[rbac_plan.Manifest] | None = None
    ) -> RbacSyncResult:
        """Make ``name``'s managed RBAC objects what Pilothouse's roles say; one pass."""
        record = self.clusters.get(name)
        if record.provider != ProviderKind.LOCAL:
            raise errors.Conflict(
                f"cluster {name!r} was imported: Pilothouse issues no credentials for it, so it syncs no roles",
                hint="role sync and short-lived credentials are for local clusters",
            )
        wanted = tuple(desired) if desired is not None else self.desired(name)
        creds = await asyncio.to_thread(self.clusters.credentials, name)
        observed = await kube_rbac.read_rbac(creds, labels=rbac_plan.MANAGED_LABELS, include_roles=False)
        changes = rbac_plan.plan_rbac_changes(
            wanted,
            [*observed.cluster_roles, *observed.cluster_role_bindings, *observed.role_bindings],
            namespaces=observed.namespaces,
        )
        if changes.apply:
            await kube_rbac.apply_manifests(creds, changes.apply)
        if changes.delete:
            await kube_rbac.delete_objects(creds, [(r.kind, r.namespace, r.name) for r in changes.delete])
        result = RbacSyncResult(
            cluster=name,
            applied=tuple(str(rbac_plan.ObjectRef.of(m)) for m in changes.apply),
            deleted=tuple(str(r) for r in changes.delete),
            waiting=changes.waiting,
            unchanged=changes.unchanged,
        )
        if not changes.waiting:  # a waiting namespace may appear any moment: check again next pass
            self._synced[name] = (_fingerprint(wanted), time.monotonic())
        if result.changed:
            log.info(
                "rbac.synced",
                cluster=name,
                applied=list(result.applied),
                deleted=list(result.deleted),
                waiting=list(result.waiting),
            )
        return result

    async def sync_once(self) -> dict[str, RbacSyncResult | str]:
        """One pass over every Running local cluster whose plan changed or whose resync is due.

        Returns what was done per cluster contacted (an error's message for one that failed:
        it is retried next pass, and never stops the others).
        """
        records = [r for r in await asyncio.to_thread(self.clusters.clusters) if syncable(r)]
        desired = await asyncio.to_thread(self._desired_all, [r.name for r in records])
        now = time.monotonic()
        due = []
        for name, manifests in desired.items():
            last = self._synced.get(name)
            if (
                last is None
                or last[0] != _fingerprint(manifests)
                or now - last[1] >= self.resync.total_seconds()
            ):
                due.append(name)
        for gone in set(self._synced) - set(desired):
            del self._synced[gone]
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(name: str) -> RbacSyncResult | str:
            async with limit:
                try:
                    return await self.sync_cluster(name, desired[name])
                except errors.PilothouseError as exc:
                    log.warning("rbac.sync_failed", cluster=name, error=exc.message)
                    return exc.message

        results = await asyncio.gather(*(one(name) for name in due))
        return dict(zip(due, results, strict=True))
