"""Who can VERB RESOURCE in a cluster: Kubernetes RBAC evaluated, Pilothouse's groups expanded. Pure.

``compute_who_can`` reads a cluster's own RBAC objects (ClusterRoles, Roles
and their bindings, as the API server returns them: aggregated ClusterRoles
already carry their rules) and answers the question the way the RBAC
authorizer decides a request (``k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac``):
a rule allows when its verbs, API groups and resources (``*``, ``pods/log``,
``*/scale``) match; a ClusterRoleBinding grants everywhere, a RoleBinding only
in its namespace and only for namespaced resources. Rules limited to
``resourceNames`` are reported with those names. The ``system:masters``
group is always listed: the API server lets it through before RBAC is asked.
Other authorizers (Node, webhooks) are not modelled.

Subjects of the Pilothouse-managed bindings (``identity.rbac_plan``: groups
``pilothouse:<role>[:ns:<ns>]``) are expanded into the Pilothouse users and
teams whose bindings put that group into their certificates. The service
(``identity.cluster_access``) fetches the objects through ``kube.rbac`` and
calls this per cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pilothouse.identity.policy import Binding, ClusterGrant, ScopeKind, SubjectKind
from pilothouse.identity.rbac_plan import parse_group
from pilothouse.vocabulary import FIELD_MANAGER, MANAGED_BY_LABEL

Manifest = Mapping[str, Any]
SYSTEM_MASTERS = "system:masters"


class Source:
    CLUSTER = "cluster"
    PILOTHOUSE = "pilothouse"


@dataclass(frozen=True)
class AccessQuery:
    """One question, with the resource already resolved against the cluster's discovery."""

    verb: str
    group: str  # "" for the core group
    resource: str  # plural name
    subresource: str = ""
    namespaced: bool = True
    #: Only answers that hold in this namespace (cluster-wide ones included); None: anywhere.
    namespace: str | None = None

    @property
    def qualified(self) -> str:
        name = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{name}/{self.subresource}" if self.subresource else name


@dataclass(frozen=True)
class ClusterRbac:
    cluster_roles: Sequence[Manifest] = ()
    cluster_role_bindings: Sequence[Manifest] = ()
    roles: Sequence[Manifest] = ()
    role_bindings: Sequence[Manifest] = ()


@dataclass(frozen=True)
class Holder:
    """A subject that can do it, where, and through which binding."""

    source: str  # Source.CLUSTER or Source.PILOTHOUSE
    kind: str  # User, Group, ServiceAccount; for Pilothouse subjects: user, team
    name: str
    namespace: str | None  # None: in every namespace (cluster-wide)
    via: str
    only_names: tuple[str, ...] = ()  # the rule is limited to these object names
    members: tuple[str, ...] = field(default=(), compare=False)  # a Pilothouse team's members

    @property
    def where(self) -> str:
        return "cluster-wide" if self.namespace is None else f"namespace {self.namespace}"


def _rule_allows(rule: Manifest, query: AccessQuery) -> tuple[bool, tuple[str, ...]]:
    """Whether one PolicyRule allows the query, and the names it is limited to (empty: any)."""
    if rule.get("nonResourceURLs"):
        return False, ()
    verbs = rule.get("verbs") or ()
    if "*" not in verbs and query.verb not in verbs:
        return False, ()
    groups = rule.get("apiGroups") or ()
    if "*" not in groups and query.group not in groups:
        return False, ()
    resources = rule.get("resources") or ()
    combined = f"{query.resource}/{query.subresource}" if query.subresource else query.resource
    if not (
        "*" in resources
        or combined in resources
        or (query.subresource and f"*/{query.subresource}" in resources)
    ):
        return False, ()
    return True, tuple(rule.get("resourceNames") or ())


def _rules_allow(rules: Iterable[Manifest], query: AccessQuery) -> tuple[bool, tuple[str, ...]]:
    names: set[str] = set()
    allowed = False
    for rule in rules:
        ok, only = _rule_allows(rule, query)
        if ok and not only:
            return True, ()
        if ok:
            allowed = True
            names.update(only)
    return allowed, tuple(sorted(names))


def _meta(obj: Manifest) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _managed(obj: Manifest) -> bool:
    return (_meta(obj).get("labels") or {}).get(MANAGED_BY_LABEL) == FIELD_MANAGER


def _subject(subject: Manifest) -> tuple[str, str]:
    kind = str(subject.get("kind", ""))
    name = str(subject.get("name", ""))
    if kind == "ServiceAccount":
        return kind, f"system:serviceaccount:{subject.get('namespace', '')}:{name}"
    return kind, name


def _grant_on(binding: Binding, cluster: str) -> ClusterGrant | None:
    """The grant a Pilothouse binding gives on ``cluster`` (what its certificate group names)."""
    scope = binding.scope
    if scope.kind is ScopeKind.PLATFORM or (scope.kind is ScopeKind.CLUSTER and scope.cluster == cluster):
        return ClusterGrant(binding.role, None)
    if scope.kind is ScopeKind.NAMESPACE and scope.cluster == cluster:
        return ClusterGrant(binding.role, scope.namespace)
    return None


def compute_who_can(
    rbac: ClusterRbac,
    query: AccessQuery,
    *,
    cluster: str,
    bindings: Iterable[Binding] = (),
    teams: Mapping[str, Sequence[str]] | None = None,
) -> tuple[Holder, ...]:
    """Every subject that can do ``query`` on ``cluster``, sorted; Pilothouse's groups expanded.

    ``bindings``: Pilothouse's role bindings (all of them; those reaching
    ``cluster`` count); ``teams``: team name → members, shown with a team.
    """
    cluster_rules = {str(_meta(r).get("name", "")): r.get("rules") or () for r in rbac.cluster_roles}
    role_rules = {
        (str(_meta(r).get("namespace", "")), str(_meta(r).get("name", ""))): r.get("rules") or ()
        for r in rbac.roles
    }
    by_grant: dict[ClusterGrant, list[Binding]] = {}
    for binding in bindings:
        on_cluster = _grant_on(binding, cluster)
        if on_cluster is not None:
            by_grant.setdefault(on_cluster, []).append(binding)
    members = teams or {}
    found: set[Holder] = set()

    def add(binding_obj: Manifest, namespace: str | None, rules: Iterable[Manifest], via: str) -> None:
        allowed, only = _rules_allow(rules, query)
        if not allowed:
            return
        managed = _managed(binding_obj)
        for subject in binding_obj.get("subjects") or ():
            kind, name = _subject(subject)
            pilothouse_grant = parse_group(name) if managed and kind == "Group" else None
            source = Source.PILOTHOUSE if pilothouse_grant is not None else Source.CLUSTER
            found.add(Holder(source, kind, name, namespace, via, only))
            for held in by_grant.get(pilothouse_grant, []) if pilothouse_grant else []:
                team = held.subject_kind is SubjectKind.TEAM
                found.add(
                    Holder(
                        Source.PILOTHOUSE,
                        held.subject_kind.value,
                        held.subject,
                        namespace,
                        f"{held.role.value} at {held.scope} → group {name}",
                        only,
                        tuple(members.get(held.subject, ())) if team else (),
                    )
                )

    for crb in rbac.cluster_role_bindings:
        ref = crb.get("roleRef") or {}
        if ref.get("kind") != "ClusterRole":
            continue
        name = str(_meta(crb).get("name", ""))
        role = str(ref.get("name", ""))
        add(crb, None, cluster_rules.get(role, ()), f"ClusterRoleBinding {name} → ClusterRole {role}")
    if query.namespaced:
        for rb in rbac.role_bindings:
            namespace = str(_meta(rb).get("namespace", ""))
            if query.namespace is not None and namespace != query.namespace:
                continue
            ref = rb.get("roleRef") or {}
            role = str(ref.get("name", ""))
            if ref.get("kind") == "ClusterRole":
                rules = cluster_rules.get(role, ())
            elif ref.get("kind") == "Role":
                rules = role_rules.get((namespace, role), ())
            else:
                continue
            via = f"RoleBinding {namespace}/{_meta(rb).get('name', '')} → {ref.get('kind')} {role}"
            add(rb, namespace, rules, via)
    if not any(h.kind == "Group" and h.name == SYSTEM_MASTERS and h.namespace is None for h in found):
        found.add(
            Holder(
                Source.CLUSTER, "Group", SYSTEM_MASTERS, None, "built in: the API server skips RBAC for it"
            )
        )
    return tuple(sorted(found, key=lambda h: (h.source, h.kind, h.name, h.namespace or "", h.via)))
