"""Roles, scopes, bindings and the access decision: deny by default, never wider than bound."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse.identity.policy import (
    ROLE_PERMISSIONS,
    Binding,
    ClusterGrant,
    Grant,
    Permission,
    Principal,
    Role,
    Scope,
    ScopeKind,
    SubjectKind,
    allows,
    authorize,
    authorize_anywhere,
    can_grant,
    compute_cluster_access,
    grants_of,
    parse_roles,
    principal_for,
)

PLATFORM = Scope.platform()
PROD = Scope.of_cluster("prod")
PROD_WEB = Scope.of_namespace("prod", "web")
PROD_API = Scope.of_namespace("prod", "api")
STAGING = Scope.of_cluster("staging")


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


def test_auditor_reads_what_an_audit_needs_and_changes_nothing() -> None:
    held = ROLE_PERMISSIONS[Role.AUDITOR]
    assert {
        Permission.AUDIT_READ,
        Permission.USERS_READ,
        Permission.ROLES_READ,
        Permission.TOKENS_READ,
    } <= held
    assert not {p for p in held if p.value.endswith((":admin", ":write", ":bind", ":manage", ":credentials"))}


def test_identity_administration_is_platform_admin_only() -> None:
    for permission in (Permission.USERS_ADMIN, Permission.TEAMS_ADMIN, Permission.TOKENS_ADMIN):
        assert [r for r in Role if permission in ROLE_PERMISSIONS[r]] == [Role.PLATFORM_ADMIN]


# ----- scopes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grant", "target", "covered"),
    [
        (PLATFORM, PLATFORM, True),
        (PLATFORM, PROD, True),
        (PLATFORM, PROD_WEB, True),
        (PROD, PROD, True),
        (PROD, PROD_WEB, True),
        (PROD, PLATFORM, False),
        (PROD, STAGING, False),
        (PROD, Scope.of_namespace("staging", "web"), False),
        (PROD_WEB, PROD_WEB, True),
        (PROD_WEB, PROD, False),
        (PROD_WEB, PLATFORM, False),
        (PROD_WEB, PROD_API, False),
        (PROD_WEB, Scope.of_namespace("staging", "web"), False),
    ],
)
def test_a_scope_covers_only_itself_and_narrower_targets(grant: Scope, target: Scope, covered: bool) -> None:
    assert grant.covers(target) is covered


@pytest.mark.parametrize("text", ["platform", "cluster/prod", "namespace/prod/web"])
def test_scopes_round_trip_through_text(text: str) -> None:
    assert str(Scope.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    ["", "cluster", "cluster/", "cluster/Prod", "namespace/prod", "namespace//web", "cluster/a/b", "x/y"],
)
def test_malformed_scopes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"scope|valid name"):
        Scope.parse(text)


def test_a_namespace_needs_its_cluster_and_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="needs its cluster"):
        Scope.of(None, "web")
    with pytest.raises(ValueError, match="a cluster scope cannot"):
        Scope(ScopeKind.CLUSTER)
    with pytest.raises(ValueError, match="a platform scope cannot"):
        Scope(ScopeKind.PLATFORM, "prod")
    assert Scope.of("", "") == PLATFORM
    assert Scope.of("prod", "") == PROD


# ----- bindings and decisions -----------------------------------------------------------------


def bound(kind: SubjectKind, subject: str, role: Role, scope: Scope) -> Binding:
    return Binding(kind, subject, role, scope)


def test_deny_by_default() -> None:
    nobody = principal_for([], user="alice")
    for permission in Permission:
        decision = authorize(nobody, permission, PLATFORM)
        assert not decision
        assert permission.value in decision.reason


def test_a_namespace_binding_never_reaches_its_cluster_or_the_platform() -> None:
    alice = principal_for([bound(SubjectKind.USER, "alice", Role.CLUSTER_ADMIN, PROD_WEB)], user="alice")
    assert authorize(alice, Permission.CLUSTERS_WRITE, PROD_WEB)
    assert not authorize(alice, Permission.CLUSTERS_WRITE, PROD)
    assert not authorize(alice, Permission.CLUSTERS_READ, PLATFORM)
    assert not authorize(alice, Permission.CLUSTERS_READ, PROD_API)


def test_team_bindings_reach_members_only() -> None:
    bindings = [bound(SubjectKind.TEAM, "sre", Role.OPERATOR, PROD)]
    member = principal_for(bindings, user="bob", teams=["sre"])
    outsider = principal_for(bindings, user="carol", teams=["dev"])
    decision = authorize(member, Permission.CLUSTERS_WRITE, PROD_WEB)
    assert decision
    assert "team sre" in decision.reason
    assert not authorize(outsider, Permission.CLUSTERS_WRITE, PROD_WEB)


def test_bindings_of_other_users_give_nothing() -> None:
    bindings = [bound(SubjectKind.USER, "alice", Role.PLATFORM_ADMIN, PLATFORM)]
    assert grants_of(bindings, user="bob", teams=["alice"]) == ()


def test_a_token_restriction_narrows_but_never_widens() -> None:
    user_grants = (Grant(Role.OPERATOR, PROD, "user alice"),)
    restricted = Principal(
        name="user:alice",
        grants=user_grants,
        user="alice",
        restriction=(Grant(Role.VIEWER, PLATFORM, "token t"),),
    )
    assert authorize(restricted, Permission.CLUSTERS_READ, PROD)
    assert not authorize(restricted, Permission.CLUSTERS_WRITE, PROD)  # the token only grants viewer
    assert not authorize(restricted, Permission.CLUSTERS_READ, STAGING)  # the user has nothing there
    nothing = Principal(name="user:alice", grants=user_grants, user="alice", restriction=())
    assert not any(authorize(nothing, p, PROD) for p in Permission)


def test_authorize_anywhere_is_the_gate_of_filtered_routes() -> None:
    alice = principal_for([bound(SubjectKind.USER, "alice", Role.VIEWER, PROD_WEB)], user="alice")
    assert authorize_anywhere(alice, Permission.CLUSTERS_READ)
    assert not authorize_anywhere(alice, Permission.CLUSTERS_WRITE)
    elsewhere = Principal(
        name="user:alice", grants=alice.grants, user="alice", restriction=(Grant(Role.VIEWER, STAGING),)
    )
    assert not authorize_anywhere(elsewhere, Permission.CLUSTERS_READ)


def test_nobody_grants_more_than_they_hold() -> None:
    prod_admin = principal_for([bound(SubjectKind.USER, "ann", Role.CLUSTER_ADMIN, PROD)], user="ann")
    assert can_grant(prod_admin, Role.VIEWER, PROD)
    assert can_grant(prod_admin, Role.OPERATOR, PROD_WEB)
    assert can_grant(prod_admin, Role.CLUSTER_ADMIN, PROD)
    assert not can_grant(prod_admin, Role.VIEWER, STAGING)
    assert not can_grant(prod_admin, Role.VIEWER, PLATFORM)
    refused = can_grant(prod_admin, Role.PLATFORM_ADMIN, PROD)
    assert not refused
    assert "users:admin" in refused.reason
    assert not can_grant(prod_admin, Role.AUDITOR, PROD)  # ann cannot read the audit trail herself
    operator = principal_for([bound(SubjectKind.USER, "op", Role.OPERATOR, PLATFORM)], user="op")
    assert not can_grant(operator, Role.VIEWER, PROD)  # no roles:bind at all


def test_cluster_access_lists_cluster_wide_and_namespace_grants() -> None:
    bindings = [
        bound(SubjectKind.USER, "alice", Role.VIEWER, PROD_WEB),
        bound(SubjectKind.TEAM, "sre", Role.OPERATOR, PROD),
        bound(SubjectKind.USER, "alice", Role.AUDITOR, PLATFORM),
        bound(SubjectKind.USER, "alice", Role.CLUSTER_ADMIN, STAGING),
    ]
    alice = principal_for(bindings, user="alice", teams=["sre"])
    assert compute_cluster_access(alice, "prod") == (
        ClusterGrant(Role.AUDITOR, None),
        ClusterGrant(Role.OPERATOR, None),
        ClusterGrant(Role.VIEWER, "web"),
    )
    assert compute_cluster_access(alice, "dev") == (ClusterGrant(Role.AUDITOR, None),)
    restricted = Principal(
        name="user:alice", grants=alice.grants, user="alice", restriction=(Grant(Role.VIEWER, PROD_API),)
    )
    assert compute_cluster_access(restricted, "prod") == (ClusterGrant(Role.VIEWER, "api"),)
    assert compute_cluster_access(restricted, "staging") == ()


# ----- properties -----------------------------------------------------------------------------

clusters = st.sampled_from(["prod", "staging", "dev"])
namespaces = st.sampled_from(["web", "api", "db"])
scopes = st.one_of(
    st.just(PLATFORM),
    clusters.map(Scope.of_cluster),
    st.tuples(clusters, namespaces).map(lambda cn: Scope.of_namespace(*cn)),
)
roles = st.sampled_from(list(Role))
subjects = st.one_of(
    st.tuples(st.just(SubjectKind.USER), st.sampled_from(["alice", "bob"])),
    st.tuples(st.just(SubjectKind.TEAM), st.sampled_from(["sre", "dev"])),
)
bindings_lists = st.lists(
    st.builds(
        lambda subject, role, scope: Binding(subject[0], subject[1], role, scope), subjects, roles, scopes
    ),
    max_size=8,
)
permissions = st.sampled_from(list(Permission))
DEPTH = {ScopeKind.PLATFORM: 0, ScopeKind.CLUSTER: 1, ScopeKind.NAMESPACE: 2}


@settings(max_examples=400, deadline=None)
@given(bindings=bindings_lists, permission=permissions, target=scopes)
def test_no_binding_authorizes_a_target_wider_than_its_scope(
    bindings: list[Binding], permission: Permission, target: Scope
) -> None:
    alice = principal_for(bindings, user="alice", teams=["sre"])
    decision = authorize(alice, permission, target)
    if decision:
        reaching = [
            g for g in alice.grants if permission in ROLE_PERMISSIONS[g.role] and g.scope.covers(target)
        ]
        assert reaching
        for grant in reaching:
            assert DEPTH[grant.scope.kind] <= DEPTH[target.kind]
            assert grant.scope.kind is ScopeKind.PLATFORM or grant.scope.cluster == target.cluster
    narrower_only = [b for b in bindings if DEPTH[b.scope.kind] > DEPTH[target.kind]]
    assert not authorize(principal_for(narrower_only, user="alice", teams=["sre"]), permission, target)


@settings(max_examples=400, deadline=None)
@given(bindings=bindings_lists, permission=permissions, target=scopes, data=st.data())
def test_removing_a_binding_never_increases_access(
    bindings: list[Binding], permission: Permission, target: Scope, data: st.DataObject
) -> None:
    before = authorize(principal_for(bindings, user="alice", teams=["sre"]), permission, target)
    if bindings:
        index = data.draw(st.integers(0, len(bindings) - 1))
        fewer = bindings[:index] + bindings[index + 1 :]
        after = authorize(principal_for(fewer, user="alice", teams=["sre"]), permission, target)
        assert not after or before
        access_before = set(
            compute_cluster_access(principal_for(bindings, user="alice", teams=["sre"]), "prod")
        )
        access_after = set(compute_cluster_access(principal_for(fewer, user="alice", teams=["sre"]), "prod"))
        assert access_after <= access_before


@settings(max_examples=200, deadline=None)
@given(
    bindings=bindings_lists, restriction=st.lists(st.builds(Grant, roles, scopes), max_size=3), target=scopes
)
def test_a_restricted_principal_never_exceeds_its_user_or_its_token(
    bindings: list[Binding], restriction: list[Grant], target: Scope
) -> None:
    user = principal_for(bindings, user="alice", teams=["sre"])
    token_only = Principal(name="token:t", grants=tuple(restriction))
    restricted = Principal(name=user.name, grants=user.grants, user="alice", restriction=tuple(restriction))
    for permission in Permission:
        if authorize(restricted, permission, target):
            assert authorize(user, permission, target)
            assert authorize(token_only, permission, target)
