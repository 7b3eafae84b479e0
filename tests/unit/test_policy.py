"""Roles and permissions: deny by default."""

from __future__ import annotations

import pytest

from pilothouse.identity.policy import ROLE_PERMISSIONS, Permission, Role, allows, parse_roles


@pytest.mark.parametrize("permission", list(Permission))
def test_platform_admin_has_everything_and_nobody_else_administers_tokens(permission: Permission) -> None:
    assert allows(["platform-admin"], permission)
    if permission is Permission.TOKENS_ADMIN:
        assert [r for r in Role if allows([r.value], permission)] == [Role.PLATFORM_ADMIN]


@pytest.mark.parametrize("roles", [[], ["nobody"], ["PLATFORM-ADMIN"], ["viewer "]])
def test_unknown_or_missing_roles_grant_nothing(roles: list[str]) -> None:
    assert not any(allows(roles, p) for p in Permission)


def test_viewer_reads_only() -> None:
    assert allows(["viewer"], Permission.CLUSTERS_READ)
    assert not allows(["viewer"], Permission.CLUSTERS_WRITE)
    assert not allows(["viewer"], Permission.CLUSTERS_CREDENTIALS)


def test_roles_combine_and_every_role_is_mapped() -> None:
    assert allows(["viewer", "operator"], Permission.CLUSTERS_WRITE)
    assert set(ROLE_PERMISSIONS) == set(Role)
    assert parse_roles(["viewer", "x", "auditor"]) == (Role.VIEWER, Role.AUDITOR)
