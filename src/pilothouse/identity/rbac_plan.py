"""What Pilothouse's roles are inside a cluster: a fixed set of RBAC objects, planned purely.

Owns the translation of Pilothouse roles into Kubernetes RBAC and the names
both sides agree on. ``identity.cluster_access`` puts ``groups_for(grants)``
into the short-lived client certificates it issues; ``identity.rbac_sync``
applies ``plan_cluster_rbac`` to each cluster and deletes what
``plan_rbac_changes`` says is no longer wanted; ``identity.who_can`` maps the
groups back to Pilothouse's bindings. No I/O: objects are plain manifests
(dicts) that ``kube.rbac`` turns into lightkube requests.

The objects, per cluster (labelled ``app.kubernetes.io/managed-by=pilothouse``):

- seven ClusterRoles, always the same (``CLUSTER_ROLES``):

  - ``pilothouse:platform-admin``: every verb on everything (like Kubernetes ``cluster-admin``);
  - ``pilothouse:cluster-admin``: the same, for the role bound cluster-wide — a cluster admin
    already holds the cluster's admin kubeconfig (``clusters:credentials``);
  - ``pilothouse:namespace-admin``: aggregates like Kubernetes ``admin``, for a cluster-admin
    bound in one namespace (no writes to its quotas or to the namespace itself);
  - ``pilothouse:operator``: aggregates like Kubernetes ``edit``;
  - ``pilothouse:viewer``: aggregates like Kubernetes ``view`` (no Secrets);
  - ``pilothouse:auditor``: ``view`` plus ``pilothouse:auditor-reads``;
  - ``pilothouse:auditor-reads``: read-only nodes, namespaces, volumes, events, RBAC, storage,
    CRDs and admission configuration — never Secrets.

  The aggregated ones carry an ``aggregationRule``: kube-controller-manager
  fills their rules from the built-in ``system:aggregate-to-*`` roles and from
  any CRD role labelled to aggregate there, so they follow the cluster's own
  version of ``view``/``edit``/``admin``. They carry no ``aggregate-to-*``
  label themselves, so they never leak into the built-in roles.
- five ClusterRoleBindings ``pilothouse:<role>``, always: group
  ``pilothouse:<role>`` (a role held cluster-wide: bound at the platform or at
  this cluster) → the role's cluster-wide ClusterRole;
- one RoleBinding ``pilothouse:<role>`` in each namespace where the role is in
  use (``compute_rbac_grants``): group ``pilothouse:<role>:ns:<namespace>`` →
  the role's in-namespace ClusterRole.

So the number of objects is ``12 + (roles in use per namespace, summed over namespaces)``: it never
grows with users or teams (who holds a group is written in their
certificate, not in the cluster). Removing a binding stops new certificates
from carrying the group at once; the sync deletes a RoleBinding once no grant
needs it; old certificates die at their NotAfter (at most an hour).

A namespace's RoleBindings cover each role held there *and the roles it
contains* (by permission inclusion, ``ROLE_PERMISSIONS``): a user's API token
may be restricted to a smaller role (``policy.compute_cluster_access`` takes
the meet), and its certificate then carries the smaller role's group. The
Kubernetes roles are ordered the same way (view ⊂ edit ⊂ admin ⊂ everything).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pilothouse.identity.policy import (
    ROLE_PERMISSIONS,
    Binding,
    ClusterGrant,
    Grant,
    Role,
    ScopeKind,
)
from pilothouse.vocabulary import FIELD_MANAGER, MANAGED_BY_LABEL

PREFIX = "pilothouse:"
NAMESPACE_MARK = ":ns:"
RBAC_API = "rbac.authorization.k8s.io"
RBAC_VERSION = f"{RBAC_API}/v1"
MANAGED_LABELS = {MANAGED_BY_LABEL: FIELD_MANAGER}
AUDITOR_AGGREGATION_LABEL = "pilothouse.dev/aggregate-to-auditor"
READ = ("get", "list", "watch")

Manifest = dict[str, Any]


def user_name(user: str) -> str:
    """The Kubernetes user name (certificate CN) of a Pilothouse user."""
    return PREFIX + user


def group_for(grant: ClusterGrant) -> str:
    """The Kubernetes group (certificate O) that carries one grant on one cluster."""
    base = PREFIX + grant.role.value
    return base if grant.namespace is None else f"{base}{NAMESPACE_MARK}{grant.namespace}"


def groups_for(grants: Iterable[ClusterGrant]) -> tuple[str, ...]:
    return tuple(sorted({group_for(g) for g in grants}))


def parse_group(group: str) -> ClusterGrant | None:
    """The grant a Pilothouse group stands for; None for any other group."""
    if not group.startswith(PREFIX):
        return None
    role_text, _, namespace = group.removeprefix(PREFIX).partition(NAMESPACE_MARK)
    try:
        role = Role(role_text)
    except ValueError:
        return None
    if NAMESPACE_MARK in group and not namespace:
        return None
    return ClusterGrant(role, namespace or None)


# ----- the ClusterRoles -------------------------------------------------------------------------


def _aggregating(*labels: str) -> dict[str, Any]:
    return {"clusterRoleSelectors": [{"matchLabels": {label: "true"}} for label in labels]}


_EVERYTHING = [
    {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
    {"nonResourceURLs": ["*"], "verbs": ["*"]},
]
_AUDITOR_READS = [
    {
        "apiGroups": [""],
        "resources": ["nodes", "namespaces", "persistentvolumes", "events", "componentstatuses"],
        "verbs": list(READ),
    },
    {
        "apiGroups": [
            "events.k8s.io",
            RBAC_API,
            "storage.k8s.io",
            "apiextensions.k8s.io",
            "admissionregistration.k8s.io",
            "apiregistration.k8s.io",
            "scheduling.k8s.io",
            "node.k8s.io",
        ],
        "resources": ["*"],
        "verbs": list(READ),
    },
]

#: ClusterRole name → (explicit rules, aggregation rule, extra labels); exactly one of the first two.
_ROLE_BODIES: dict[str, tuple[list[dict[str, Any]] | None, dict[str, Any] | None, dict[str, str]]] = {
    "pilothouse:platform-admin": (_EVERYTHING, None, {}),
    "pilothouse:cluster-admin": (_EVERYTHING, None, {}),
    "pilothouse:namespace-admin": (None, _aggregating("rbac.authorization.k8s.io/aggregate-to-admin"), {}),
    "pilothouse:operator": (None, _aggregating("rbac.authorization.k8s.io/aggregate-to-edit"), {}),
    "pilothouse:viewer": (None, _aggregating("rbac.authorization.k8s.io/aggregate-to-view"), {}),
    "pilothouse:auditor": (
        None,
        _aggregating("rbac.authorization.k8s.io/aggregate-to-view", AUDITOR_AGGREGATION_LABEL),
        {},
    ),
    "pilothouse:auditor-reads": (_AUDITOR_READS, None, {AUDITOR_AGGREGATION_LABEL: "true"}),
}


@dataclass(frozen=True)
class RoleMapping:
    """Which ClusterRole a role's bindings point at: cluster-wide, and inside one namespace."""

    cluster_wide: str
    in_namespace: str


ROLE_MAPPING: dict[Role, RoleMapping] = {
    Role.PLATFORM_ADMIN: RoleMapping("pilothouse:platform-admin", "pilothouse:platform-admin"),
    Role.CLUSTER_ADMIN: RoleMapping("pilothouse:cluster-admin", "pilothouse:namespace-admin"),
    Role.OPERATOR: RoleMapping("pilothouse:operator", "pilothouse:operator"),
    Role.VIEWER: RoleMapping("pilothouse:viewer", "pilothouse:viewer"),
    Role.AUDITOR: RoleMapping("pilothouse:auditor", "pilothouse:auditor"),
}


def _metadata(name: str, namespace: str | None = None, extra: Mapping[str, str] | None = None) -> Manifest:
    meta: Manifest = {"name": name, "labels": {**MANAGED_LABELS, **(extra or {})}}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def cluster_role(name: str) -> Manifest:
    rules, aggregation, labels = _ROLE_BODIES[name]
    manifest: Manifest = {
        "apiVersion": RBAC_VERSION,
        "kind": "ClusterRole",
        "metadata": _metadata(name, extra=labels),
    }
    if rules is not None:
        manifest["rules"] = [dict(rule) for rule in rules]
    if aggregation is not None:
        manifest["aggregationRule"] = aggregation
    return manifest


CLUSTER_ROLES: tuple[str, ...] = tuple(_ROLE_BODIES)


def _group_subject(group: str) -> dict[str, str]:
    return {"kind": "Group", "apiGroup": RBAC_API, "name": group}


def cluster_role_binding(role: Role) -> Manifest:
    return {
        "apiVersion": RBAC_VERSION,
        "kind": "ClusterRoleBinding",
        "metadata": _metadata(PREFIX + role.value),
        "roleRef": {"apiGroup": RBAC_API, "kind": "ClusterRole", "name": ROLE_MAPPING[role].cluster_wide},
        "subjects": [_group_subject(group_for(ClusterGrant(role, None)))],
    }


def role_binding(role: Role, namespace: str) -> Manifest:
    return {
        "apiVersion": RBAC_VERSION,
        "kind": "RoleBinding",
        "metadata": _metadata(PREFIX + role.value, namespace),
        "roleRef": {"apiGroup": RBAC_API, "kind": "ClusterRole", "name": ROLE_MAPPING[role].in_namespace},
        "subjects": [_group_subject(group_for(ClusterGrant(role, namespace)))],
    }


# ----- which grants are in use on a cluster -------------------------------------------------------


def contained_roles(role: Role) -> frozenset[Role]:
    """``role`` and every role whose permissions it includes (what a restricted token may narrow it to)."""
    held = ROLE_PERMISSIONS[role]
    return frozenset(r for r in Role if ROLE_PERMISSIONS[r] <= held)


def compute_rbac_grants(
    bindings: Iterable[Binding], cluster: str, *, token_grants: Iterable[Grant] = ()
) -> frozenset[ClusterGrant]:
    """The namespace grants a cluster needs RoleBindings for.

    Every namespace-scoped binding on ``cluster`` — and every namespace grant of
    a live API token (a restricted token's meet may name it) — with the roles
    it contains. Cluster-wide grants need nothing: their ClusterRoleBindings
    always exist.
    """
    scopes = [b.scope for b in bindings]
    roles = [b.role for b in bindings]
    for grant in token_grants:
        scopes.append(grant.scope)
        roles.append(grant.role)
    found: set[ClusterGrant] = set()
    for role, scope in zip(roles, scopes, strict=True):
        if scope.kind is ScopeKind.NAMESPACE and scope.cluster == cluster:
            found.update(ClusterGrant(r, scope.namespace) for r in contained_roles(role))
    return frozenset(found)


def plan_cluster_rbac(in_use: Iterable[ClusterGrant]) -> tuple[Manifest, ...]:
    """Every managed RBAC object a cluster should have, given its namespace grants in use."""
    objects = [cluster_role(name) for name in CLUSTER_ROLES]
    objects += [cluster_role_binding(role) for role in Role]
    namespaced = sorted({g for g in in_use if g.namespace is not None}, key=lambda g: (g.namespace, g.role))
    objects += [role_binding(g.role, g.namespace) for g in namespaced if g.namespace is not None]
    return tuple(objects)


# ----- changes against what the cluster has -------------------------------------------------------


@dataclass(frozen=True, order=True)
class ObjectRef:
    kind: str
    namespace: str  # "" for cluster-scoped objects
    name: str

    @classmethod
    def of(cls, manifest: Mapping[str, Any]) -> ObjectRef:
        meta = manifest.get("metadata") or {}
        return cls(str(manifest.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name", "")))

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


@dataclass(frozen=True)
class RbacChanges:
    """What one sync pass does to one cluster."""

    apply: tuple[Manifest, ...]
    delete: tuple[ObjectRef, ...]
    #: Namespaces a grant names that the cluster does not have (yet): their RoleBindings wait.
    waiting: tuple[str, ...]
    unchanged: int

    @property
    def empty(self) -> bool:
        return not self.apply and not self.delete


def _normal(value: Any) -> Any:
    """Drop empty and null fields, so a manifest compares equal to what the server echoes back."""
    if isinstance(value, Mapping):
        kept = {k: _normal(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, [], {}, "")}
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    return value


def _matches(desired: Manifest, observed: Manifest) -> bool:
    """Whether ``observed`` already says what ``desired`` says (fields another manager fills are ignored)."""
    labels = (observed.get("metadata") or {}).get("labels") or {}
    wanted = desired["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in wanted.items()):
        return False
    return all(
        _normal(observed.get(field)) == _normal(value)
        for field, value in desired.items()
        if field not in ("apiVersion", "kind", "metadata")
    )


def plan_rbac_changes(
    desired: Sequence[Manifest], observed: Sequence[Manifest], *, namespaces: Iterable[str]
) -> RbacChanges:
    """Apply what is missing or different, delete managed objects no longer wanted.

    ``observed``: the cluster's objects labelled as managed by Pilothouse;
    ``namespaces``: the namespaces the cluster has.
    """
    present = set(namespaces)
    have = {ObjectRef.of(o): o for o in observed}
    wanted: dict[ObjectRef, Manifest] = {}
    waiting: set[str] = set()
    for manifest in desired:
        ref = ObjectRef.of(manifest)
        if ref.namespace and ref.namespace not in present:
            waiting.add(ref.namespace)
            continue
        wanted[ref] = manifest
    apply = tuple(m for ref, m in wanted.items() if ref not in have or not _matches(m, have[ref]))
    delete = tuple(sorted(ref for ref in have if ref not in wanted))
    return RbacChanges(
        apply=apply, delete=delete, waiting=tuple(sorted(waiting)), unchanged=len(wanted) - len(apply)
    )
