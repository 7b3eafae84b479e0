"""Platform roles, scoped bindings and the one access decision: pure logic, no I/O.

Every API route and CLI command names one ``Permission`` and a target
``Scope``; ``authorize`` is the single check, called through
``identity.accounts.Accounts.check`` by the API's ``guarded`` dependency and
by the CLI's ``cli.access``. Deny by default: nothing is allowed unless a
grant says so.

A ``Binding`` gives a user or a team one ``Role`` at one ``Scope``: the
platform, a cluster, or one namespace of a cluster. A grant at a wider scope
covers every narrower target (platform ⊃ cluster ⊃ namespace), never the
other way: a namespace binding never reaches its cluster, and a cluster
binding never reaches the platform or another cluster. There is no role
inheritance between roles and no implicit grant: what ``ROLE_PERMISSIONS``
lists at the bound scope is all a binding gives.

A ``Principal`` is who calls: a user (with the teams they belong to) or a
stand-alone API token, carrying the ``Grant``s their bindings resolve to. An
API token owned by a user also carries a *restriction*: the token's own
grants, intersected with the user's (the token can never do more than its
owner, nor more than it was issued for).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Permission(StrEnum):
    CLUSTERS_READ = "clusters:read"
    CLUSTERS_WRITE = "clusters:write"
    CLUSTERS_CREDENTIALS = "clusters:credentials"
    TOKENS_ADMIN = "tokens:admin"
    TOKENS_READ = "tokens:read"  # list tokens (never their values)
    ALERTS_MANAGE = "alerts:manage"  # acknowledge alerts, create and expire silences
    USERS_READ = "users:read"  # list users, teams and sessions
    USERS_ADMIN = "users:admin"  # create, disable, delete, reset passwords and MFA, revoke sessions
    TEAMS_ADMIN = "teams:admin"  # create and delete teams, change members, require MFA
    ROLES_READ = "roles:read"  # list role bindings
    ROLES_BIND = "roles:bind"  # create and remove role bindings (never above one's own permissions)
    AUDIT_READ = "audit:read"  # the audit trail


class Role(StrEnum):
    PLATFORM_ADMIN = "platform-admin"
    CLUSTER_ADMIN = "cluster-admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    AUDITOR = "auditor"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.PLATFORM_ADMIN: frozenset(Permission),
    Role.CLUSTER_ADMIN: frozenset(
        {
            Permission.CLUSTERS_READ,
            Permission.CLUSTERS_WRITE,
            Permission.CLUSTERS_CREDENTIALS,
            Permission.ALERTS_MANAGE,
            Permission.ROLES_READ,
            Permission.ROLES_BIND,
        }
    ),
    Role.OPERATOR: frozenset({Permission.CLUSTERS_READ, Permission.CLUSTERS_WRITE, Permission.ALERTS_MANAGE}),
    Role.VIEWER: frozenset({Permission.CLUSTERS_READ}),
    Role.AUDITOR: frozenset(
        {
            Permission.CLUSTERS_READ,
            Permission.USERS_READ,
            Permission.ROLES_READ,
            Permission.TOKENS_READ,
            Permission.AUDIT_READ,
        }
    ),
}


def parse_roles(names: Iterable[str]) -> tuple[Role, ...]:
    """Known roles among ``names``; unknown names grant nothing."""
    known = {r.value: r for r in Role}
    return tuple(known[n] for n in names if n in known)


def allows(roles: Iterable[str], permission: Permission) -> bool:
    """Whether roles held at the platform scope grant ``permission`` (anywhere)."""
    return any(permission in ROLE_PERMISSIONS[role] for role in parse_roles(roles))


# ----- scopes ---------------------------------------------------------------------------------


class ScopeKind(StrEnum):
    PLATFORM = "platform"
    CLUSTER = "cluster"
    NAMESPACE = "namespace"


_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, order=True)
class Scope:
    """Where a role applies: the whole platform, one cluster, or one namespace of one cluster."""

    kind: ScopeKind
    cluster: str = ""
    namespace: str = ""

    def __post_init__(self) -> None:
        shaped = {
            ScopeKind.PLATFORM: not self.cluster and not self.namespace,
            ScopeKind.CLUSTER: bool(self.cluster) and not self.namespace,
            ScopeKind.NAMESPACE: bool(self.cluster) and bool(self.namespace),
        }[self.kind]
        if not shaped:
            raise ValueError(
                f"a {self.kind.value} scope cannot have cluster={self.cluster!r} ns={self.namespace!r}"
            )

    @classmethod
    def platform(cls) -> Scope:
        return cls(ScopeKind.PLATFORM)

    @classmethod
    def of_cluster(cls, cluster: str) -> Scope:
        return cls(ScopeKind.CLUSTER, cluster)

    @classmethod
    def of_namespace(cls, cluster: str, namespace: str) -> Scope:
        return cls(ScopeKind.NAMESPACE, cluster, namespace)

    @classmethod
    def of(cls, cluster: str | None = None, namespace: str | None = None) -> Scope:
        """The narrowest scope named: no cluster → platform; a namespace without a cluster is refused."""
        if not cluster:
            if namespace:
                raise ValueError("a namespace scope needs its cluster")
            return cls.platform()
        return cls.of_namespace(cluster, namespace) if namespace else cls.of_cluster(cluster)

    @classmethod
    def checked(cls, cluster: str | None = None, namespace: str | None = None) -> Scope:
        """``of`` for names from users: cluster and namespace must be DNS labels."""
        for what, value in (("cluster", cluster), ("namespace", namespace)):
            if value and not _DNS_LABEL.match(value):
                raise ValueError(f"{what} {value!r} is not a valid name (lower-case DNS label)")
        return cls.of(cluster, namespace)

    @classmethod
    def parse(cls, text: str) -> Scope:
        """``platform``, ``cluster/NAME`` or ``namespace/CLUSTER/NS`` (as ``str`` writes them)."""
        parts = text.split("/")
        if parts == ["platform"]:
            return cls.platform()
        if all(parts) and len(parts) == 2 and parts[0] == "cluster":
            return cls.checked(parts[1])
        if all(parts) and len(parts) == 3 and parts[0] == "namespace":
            return cls.checked(parts[1], parts[2])
        raise ValueError(f"{text!r} is not a scope (platform, cluster/NAME or namespace/CLUSTER/NS)")

    def covers(self, target: Scope) -> bool:
        """Whether a grant at this scope reaches ``target``: only equal or narrower targets."""
        if self.kind is ScopeKind.PLATFORM:
            return True
        if self.kind is ScopeKind.CLUSTER:
            return target.kind is not ScopeKind.PLATFORM and target.cluster == self.cluster
        return target == self

    def __str__(self) -> str:
        if self.kind is ScopeKind.PLATFORM:
            return "platform"
        if self.kind is ScopeKind.CLUSTER:
            return f"cluster/{self.cluster}"
        return f"namespace/{self.cluster}/{self.namespace}"


# ----- bindings, grants, principals -----------------------------------------------------------


class SubjectKind(StrEnum):
    USER = "user"
    TEAM = "team"


@dataclass(frozen=True)
class Binding:
    """A role given to a user or a team at a scope."""

    subject_kind: SubjectKind
    subject: str
    role: Role
    scope: Scope


@dataclass(frozen=True)
class Grant:
    """A role held at a scope, and where it came from (``user alice``, ``team sre``, ``token ci``)."""

    role: Role
    scope: Scope
    via: str = ""

    def __str__(self) -> str:
        return f"{self.role.value}@{self.scope}"


@dataclass(frozen=True)
class Principal:
    """Who calls: a user (with their teams) or a stand-alone token, and what they hold."""

    name: str  # "user:alice", "token:ci", "local:root"
    grants: tuple[Grant, ...]
    user: str | None = None
    teams: frozenset[str] = field(default_factory=frozenset)
    #: The grants of the token the user authenticated with; None: the user's full access (session).
    restriction: tuple[Grant, ...] | None = None
    #: How the caller authenticated: "session 1a2b3c4d", "token ci", "local operator".
    via: str = ""

    @property
    def roles(self) -> tuple[str, ...]:
        """The distinct roles held, at any scope (for display)."""
        return tuple(sorted({g.role.value for g in self.grants}))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def grants_of(bindings: Iterable[Binding], *, user: str | None, teams: Iterable[str]) -> tuple[Grant, ...]:
    """The grants ``bindings`` give a user who belongs to ``teams`` (bindings of others give nothing)."""
    member_of = frozenset(teams)
    found = []
    for binding in bindings:
        if binding.subject_kind is SubjectKind.USER and user is not None and binding.subject == user:
            found.append(Grant(binding.role, binding.scope, via=f"user {user}"))
        elif binding.subject_kind is SubjectKind.TEAM and binding.subject in member_of:
            found.append(Grant(binding.role, binding.scope, via=f"team {binding.subject}"))
    return tuple(found)


def principal_for(
    bindings: Iterable[Binding], *, user: str, teams: Iterable[str] = (), via: str = ""
) -> Principal:
    """A user principal holding what ``bindings`` give the user and their teams."""
    member_of = frozenset(teams)
    return Principal(
        name=f"user:{user}",
        grants=grants_of(bindings, user=user, teams=member_of),
        user=user,
        teams=member_of,
        via=via,
    )


def _granting(grants: Iterable[Grant], permission: Permission, target: Scope) -> Grant | None:
    for grant in grants:
        if permission in ROLE_PERMISSIONS[grant.role] and grant.scope.covers(target):
            return grant
    return None


def authorize(principal: Principal, permission: Permission, target: Scope) -> Decision:
    """May ``principal`` use ``permission`` on ``target``? Deny unless a grant at ``target`` or wider allows it."""
    granting = _granting(principal.grants, permission, target)
    if granting is None:
        return Decision(False, f"{principal.name} has no role granting {permission.value} on {target}")
    if principal.restriction is not None:
        limit = _granting(principal.restriction, permission, target)
        if limit is None:
            return Decision(
                False,
                f"{principal.name} authenticated with {principal.via or 'a token'}, "
                f"which does not grant {permission.value} on {target}",
            )
    return Decision(
        True, f"{granting} ({granting.via or principal.name}) grants {permission.value} on {target}"
    )


def authorize_anywhere(principal: Principal, permission: Permission) -> Decision:
    """Whether ``principal`` holds ``permission`` at some scope: the gate of routes that filter by scope."""
    held = [g for g in principal.grants if permission in ROLE_PERMISSIONS[g.role]]
    if principal.restriction is not None:
        limits = [g for g in principal.restriction if permission in ROLE_PERMISSIONS[g.role]]
        held = [
            g for g in held if any(lim.scope.covers(g.scope) or g.scope.covers(lim.scope) for lim in limits)
        ]
    if not held:
        return Decision(False, f"{principal.name} has no role granting {permission.value} anywhere")
    return Decision(True, f"{held[0]} grants {permission.value}")


def can_grant(principal: Principal, role: Role, scope: Scope) -> Decision:
    """May ``principal`` bind (or unbind) ``role`` at ``scope``?

    They need ``roles:bind`` there and every permission the role carries there:
    nobody hands out more than they hold.
    """
    decision = authorize(principal, Permission.ROLES_BIND, scope)
    if not decision:
        return decision
    missing = sorted(p.value for p in ROLE_PERMISSIONS[role] if not authorize(principal, p, scope))
    if missing:
        return Decision(
            False,
            f"{principal.name} cannot grant {role.value} on {scope}: it lacks {', '.join(missing)} there",
        )
    return Decision(True, f"{principal.name} may grant {role.value} on {scope}")


# ----- effective access to one cluster (for short-lived cluster credentials) --------------------


@dataclass(frozen=True, order=True)
class ClusterGrant:
    """A role on one cluster: cluster-wide (``namespace`` None) or in one namespace."""

    role: Role
    namespace: str | None


def _meet(grant: Grant, limit: Grant) -> Grant | None:
    """The part of ``grant`` that ``limit`` also allows: the narrower scope, the smaller role."""
    if grant.scope.covers(limit.scope):
        scope = limit.scope
    elif limit.scope.covers(grant.scope):
        scope = grant.scope
    else:
        return None
    held, allowed = ROLE_PERMISSIONS[grant.role], ROLE_PERMISSIONS[limit.role]
    if held <= allowed:
        return Grant(grant.role, scope, grant.via)
    if allowed <= held:
        return Grant(limit.role, scope, grant.via)
    return None  # neither role contains the other: grant nothing rather than guess


def compute_cluster_access(principal: Principal, cluster: str) -> tuple[ClusterGrant, ...]:
    """The roles ``principal`` holds on ``cluster`` (platform and cluster grants count cluster-wide).

    A restricted (token) principal gets the meet of its grants and its token's.
    Sorted and without duplicates; empty means no access.
    """
    grants: Iterable[Grant] = principal.grants
    if principal.restriction is not None:
        grants = [m for g in principal.grants for lim in principal.restriction if (m := _meet(g, lim))]
    found: set[ClusterGrant] = set()
    for grant in grants:
        if grant.scope.kind is ScopeKind.PLATFORM or (
            grant.scope.kind is ScopeKind.CLUSTER and grant.scope.cluster == cluster
        ):
            found.add(ClusterGrant(grant.role, None))
        elif grant.scope.kind is ScopeKind.NAMESPACE and grant.scope.cluster == cluster:
            found.add(ClusterGrant(grant.role, grant.scope.namespace))
    return tuple(sorted(found, key=lambda g: (g.role.value, g.namespace or "")))
