"""Platform roles and the permissions they grant: pure decision logic.

Every API route and CLI command names one ``Permission``; ``allows`` is the
single check. Deny by default: a role not listed grants nothing. Later work
adds users, teams and scoped bindings on top of this same check.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Permission(StrEnum):
    CLUSTERS_READ = "clusters:read"
    CLUSTERS_WRITE = "clusters:write"
    CLUSTERS_CREDENTIALS = "clusters:credentials"
    TOKENS_ADMIN = "tokens:admin"
    ALERTS_MANAGE = "alerts:manage"  # acknowledge alerts, create and expire silences


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
        }
    ),
    Role.OPERATOR: frozenset({Permission.CLUSTERS_READ, Permission.CLUSTERS_WRITE, Permission.ALERTS_MANAGE}),
    Role.VIEWER: frozenset({Permission.CLUSTERS_READ}),
    Role.AUDITOR: frozenset({Permission.CLUSTERS_READ}),
}


def parse_roles(names: Iterable[str]) -> tuple[Role, ...]:
    """Known roles among ``names``; unknown names grant nothing."""
    known = {r.value: r for r in Role}
    return tuple(known[n] for n in names if n in known)


def allows(roles: Iterable[str], permission: Permission) -> bool:
    return any(permission in ROLE_PERMISSIONS[role] for role in parse_roles(roles))
