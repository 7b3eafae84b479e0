"""Cluster access for people: short-lived kubeconfigs, and who can do what across the fleet.

``issue_kubeconfig(principal, cluster, ttl=…)`` gives a signed-in user a
client certificate for one local cluster, signed by that cluster's CA
(``providers.local.pki``, cryptography): CN ``pilothouse:<user>``, one O
(group) per role the user holds there (``identity.rbac_plan.groups_for`` of
``policy.compute_cluster_access``, so an API token's restriction narrows it),
valid for at most an hour (NotBefore back-dated for clock skew). Kubernetes
maps CN → user and O → groups; the groups are bound by the fixed RBAC set
``identity.rbac_sync`` keeps in the cluster, which this service syncs just
before issuing. Revocation: once a binding is removed, no new certificate
carries its group, and the old one dies at its NotAfter — the API server
refuses it (401) from then on. The key exists only in the returned
kubeconfig; nothing is logged but the user, groups, serial and expiry.

Who may ask: any user holding a role on the cluster (the gate is
``clusters:read`` somewhere; a caller with no grant on *this* cluster is
refused). Stand-alone API tokens and the local operator are not users; the
admin kubeconfig (``system:masters``) stays behind ``clusters:credentials``
(``pilothouse cluster kubeconfig``). Imported clusters are refused: Pilothouse
holds only their stored kubeconfig, not their CA.

``who_can(verb, resource, cluster=…, namespace=…)`` answers per cluster from
the cluster's own RBAC (read through ``kube.rbac``) with Pilothouse's groups
expanded into its users and teams (``identity.who_can``).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
import yaml

from pilothouse import errors
from pilothouse.identity import rbac_plan
from pilothouse.identity.accounts import Accounts, check_scope
from pilothouse.identity.policy import Binding, Principal, Scope, ScopeKind, compute_cluster_access
from pilothouse.identity.rbac_sync import ClusterDirectory, RbacSync, policy_bindings
from pilothouse.identity.who_can import AccessQuery, ClusterRbac, Holder, compute_who_can
from pilothouse.kube import rbac as kube_rbac
from pilothouse.providers.local import pki
from pilothouse.providers.local.provider import LocalRuntime
from pilothouse.vocabulary import ClusterPhase, ProviderKind

log = structlog.get_logger(__name__)

MAX_TTL = timedelta(hours=1)
MIN_TTL = timedelta(seconds=10)
_VERB = re.compile(r"^(\*|[a-z][a-z-]{0,31})$")
_NAMESPACE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_RESOURCE = re.compile(r"^[a-z0-9*][a-z0-9.*-]{0,252}(/[a-z*]{1,63})?$")


@dataclass(frozen=True, repr=False)
class IssuedKubeconfig:
    cluster: str
    user: str  # the Kubernetes user name (certificate CN)
    groups: tuple[str, ...]  # the Kubernetes groups (certificate O)
    not_after: datetime
    serial: int
    kubeconfig: str  # YAML with the private key inlined: hand to the caller, never log

    def __repr__(self) -> str:  # never show the key
        return f"IssuedKubeconfig(cluster={self.cluster!r}, user={self.user!r}, not_after={self.not_after})"


@dataclass(frozen=True)
class WhoCanAnswer:
    cluster: str
    resource: str  # as resolved on that cluster: "pods", "deployments.apps", "pods/log"
    namespaced: bool
    holders: tuple[Holder, ...]
    error: str | None = None  # the cluster could not be asked (fleet-wide answers carry on)


def check_ttl(ttl: timedelta | None) -> timedelta:
    """The lifetime asked for, within 10 s … 1 h (default: 1 h)."""
    if ttl is None:
        return MAX_TTL
    if ttl > MAX_TTL:
        raise errors.InvalidInput(
            f"credentials live at most {int(MAX_TTL.total_seconds() // 60)} minutes; {ttl} was asked for",
            hint="ask for --ttl 1h or less, and for fresh credentials when they expire",
        )
    if ttl < MIN_TTL:
        raise errors.InvalidInput(
            f"a lifetime of {ttl} is too short to use",
            hint=f"ask for at least {int(MIN_TTL.total_seconds())}s",
        )
    return ttl


def who_can_scope(cluster: str | None, namespace: str | None) -> Scope:
    """Where ``roles:read`` is needed to ask: the namespace or cluster asked about; the platform when
    no cluster is named (a namespace on every cluster is a fleet-wide question)."""
    return check_scope(cluster, namespace) if cluster else Scope.platform()


class ClusterAccess:
    def __init__(
        self,
        clusters: ClusterDirectory,
        accounts: Accounts,
        sync: RbacSync,
    ) -> None:
        self.clusters = clusters
        self.accounts = accounts
        self.sync = sync

    # ----- short-lived credentials ----------------------------------------------------------

    async def issue_kubeconfig(
        self, principal: Principal, cluster: str, *, ttl: timedelta | None = None
    ) -> IssuedKubeconfig:
        """A kubeconfig for ``principal`` (a user) on ``cluster``, carrying only their grants there."""
        lifetime = check_ttl(ttl)
        record = await asyncio.to_thread(self.clusters.get, cluster)
        if principal.user is None:
            raise errors.InvalidInput(
                f"{principal.name} is not a user: short-lived cluster credentials are issued to users",
                hint="sign in with `pilothouse login`; the admin kubeconfig is `pilothouse cluster kubeconfig`",
            )
        grants = compute_cluster_access(principal, cluster)
        if not grants:
            log.info("identity.denied", principal=principal.name, permission="kubeconfig", target=cluster)
            raise errors.Forbidden(
                f"{principal.name} holds no role on cluster {cluster!r}",
                hint="ask a cluster admin to bind you a role there (`pilothouse role bind`)",
            )
        if record.provider != ProviderKind.LOCAL:
            raise errors.Conflict(
                f"cluster {cluster!r} was imported: short-lived credentials need the cluster CA; "
                "they are available for local clusters",
                hint="use the credentials of the cluster's own identity provider",
            )
        if not record.runtime:
            raise errors.Conflict(
                f"cluster {cluster!r} has no certificate authority yet",
                hint="wait until `pilothouse cluster get` shows it Running",
            )
        authority = await asyncio.to_thread(self._authority, record.runtime)
        try:
            await self.sync.sync_cluster(cluster)
        except errors.PilothouseError as exc:  # the certificate is good; the roles follow on the next pass
            log.warning("rbac.sync_failed", cluster=cluster, error=exc.message)
        creds = await asyncio.to_thread(self.clusters.credentials, cluster)
        user = rbac_plan.user_name(principal.user)
        groups = rbac_plan.groups_for(grants)
        issued = pki.issue_certificate(
            authority,
            common_name=user,
            organizations=groups,
            client=True,
            now=self.accounts.clock(),
            valid_for=lifetime,
        )
        document = pki.kubeconfig_for(
            cluster_name=cluster, server=creds.server, ca_pem=authority.cert_pem(), client=issued, user=user
        )
        not_after = issued.cert.not_valid_after_utc
        log.info(
            "identity.kubeconfig_issued",
            user=user,
            cluster=cluster,
            groups=list(groups),
            serial=f"{issued.cert.serial_number:x}",
            not_after=not_after.isoformat(),
            via=principal.via,
        )
        return IssuedKubeconfig(
            cluster=cluster,
            user=user,
            groups=groups,
            not_after=not_after,
            serial=issued.cert.serial_number,
            kubeconfig=yaml.safe_dump(document, sort_keys=False),
        )

    @staticmethod
    def _authority(runtime: dict[str, object]) -> pki.CertificateAuthority:
        return pki.load_authorities(LocalRuntime.from_dict(runtime).layout.pki)["ca"]

    # ----- who can -------------------------------------------------------------------------

    async def who_can(
        self, verb: str, resource: str, *, cluster: str | None = None, namespace: str | None = None
    ) -> tuple[WhoCanAnswer, ...]:
        """Who can ``verb`` ``resource`` (in ``namespace``) on ``cluster``, or on every running cluster.

        The caller needs ``roles:read`` at ``who_can_scope(cluster, namespace)``.
        """
        verb, resource = verb.strip().lower(), resource.strip().lower()
        if not _VERB.match(verb):
            raise errors.InvalidInput(
                f"{verb[:40]!r} is not a verb", hint="e.g. get, list, create, delete, *"
            )
        if namespace and not _NAMESPACE.match(namespace):
            raise errors.InvalidInput(
                f"{namespace[:80]!r} is not a valid namespace name", hint="a lower-case DNS label, e.g. web"
            )
        if not _RESOURCE.match(resource):
            raise errors.InvalidInput(
                f"{resource[:60]!r} is not a resource name", hint="e.g. pods, deployments.apps, pods/log"
            )
        if cluster:
            records = [await asyncio.to_thread(self.clusters.get, cluster)]
        else:
            records = [
                r for r in await asyncio.to_thread(self.clusters.clusters) if r.phase == ClusterPhase.RUNNING
            ]
        everywhere: list[Binding] = []  # platform bindings reach every cluster; the others one each
        by_cluster: dict[str, list[Binding]] = {}
        for binding in await asyncio.to_thread(policy_bindings, self.accounts):
            if binding.scope.kind is ScopeKind.PLATFORM:
                everywhere.append(binding)
            else:
                by_cluster.setdefault(binding.scope.cluster, []).append(binding)
        teams = {t.name: t.members for t in await asyncio.to_thread(self.accounts.list_teams)}

        async def one(name: str) -> WhoCanAnswer:
            creds = await asyncio.to_thread(self.clusters.credentials, name)
            served, objects = await asyncio.gather(
                kube_rbac.resolve_resource(creds, resource), kube_rbac.read_rbac(creds)
            )
            query = AccessQuery(
                verb=verb,
                group=served.group,
                resource=served.resource,
                subresource=served.subresource,
                namespaced=served.namespaced,
                namespace=namespace or None,
            )
            rbac = ClusterRbac(
                objects.cluster_roles, objects.cluster_role_bindings, objects.roles, objects.role_bindings
            )
            bindings = [*everywhere, *by_cluster.get(name, [])]
            holders = compute_who_can(rbac, query, cluster=name, bindings=bindings, teams=teams)
            return WhoCanAnswer(name, query.qualified, served.namespaced, holders)

        async def guarded(name: str) -> WhoCanAnswer:
            try:
                return await one(name)
            except errors.PilothouseError as exc:
                if cluster:
                    raise
                return WhoCanAnswer(name, resource, True, (), error=exc.message)

        return tuple(await asyncio.gather(*(guarded(r.name) for r in records)))
