"""The pure RBAC planner: a fixed set of objects per cluster, never one per user."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse.identity import rbac_plan
from pilothouse.identity.policy import (
    Binding,
    ClusterGrant,
    Grant,
    Principal,
    Role,
    Scope,
    SubjectKind,
    compute_cluster_access,
    principal_for,
)
from pilothouse.vocabulary import MANAGED_BY_LABEL

CLUSTER = "prod"
NAMESPACES = ("web", "api", "db")
FIXED = len(rbac_plan.CLUSTER_ROLES) + len(Role)

scopes = st.sampled_from(
    [
        Scope.platform(),
        Scope.of_cluster(CLUSTER),
        Scope.of_cluster("staging"),
        *(Scope.of_namespace(CLUSTER, ns) for ns in NAMESPACES),
        Scope.of_namespace("staging", "web"),
    ]
)
roles = st.sampled_from(list(Role))
users = st.sampled_from([f"user{i}" for i in range(40)])
teams = st.sampled_from(["sre", "dev", "ops"])
bindings = st.lists(
    st.one_of(
        st.builds(Binding, st.just(SubjectKind.USER), users, roles, scopes),
        st.builds(Binding, st.just(SubjectKind.TEAM), teams, roles, scopes),
    ),
    max_size=30,
)


def _refs(objects: tuple[dict[str, Any], ...]) -> set[rbac_plan.ObjectRef]:
    return {rbac_plan.ObjectRef.of(o) for o in objects}


def _bound_groups(objects: tuple[dict[str, Any], ...]) -> set[str]:
    return {s["name"] for o in objects for s in o.get("subjects", ()) if s["kind"] == "Group"}


def test_no_grants_plan_the_fixed_set_all_labelled() -> None:
    objects = rbac_plan.plan_cluster_rbac(())
    assert len(objects) == FIXED == 12
    assert {o["kind"] for o in objects} == {"ClusterRole", "ClusterRoleBinding"}
    assert all(o["metadata"]["labels"][MANAGED_BY_LABEL] == "pilothouse" for o in objects)
    assert _bound_groups(objects) == {f"pilothouse:{r.value}" for r in Role}
    roles_ = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
    # The aggregated roles follow the cluster's own view/edit/admin and never feed the built-ins.
    assert "rules" not in roles_["pilothouse:viewer"]
    for role in roles_.values():
        assert not any(
            k.startswith("rbac.authorization.k8s.io/aggregate-to") for k in role["metadata"]["labels"]
        )
    # Every ClusterRole a binding points at is planned.
    referenced = {
        o["roleRef"]["name"]
        for o in rbac_plan.plan_cluster_rbac([ClusterGrant(r, "web") for r in Role])
        if "roleRef" in o
    }
    assert referenced <= set(roles_)


def test_auditor_never_reads_secrets() -> None:
    reads = rbac_plan.cluster_role("pilothouse:auditor-reads")["rules"]
    for rule in reads:
        if "" in rule["apiGroups"]:
            assert "secrets" not in rule["resources"]
            assert "*" not in rule["resources"]
        assert set(rule["verbs"]) <= {"get", "list", "watch"}


def test_groups_round_trip() -> None:
    for grant in [ClusterGrant(Role.VIEWER, None), ClusterGrant(Role.CLUSTER_ADMIN, "web")]:
        assert rbac_plan.parse_group(rbac_plan.group_for(grant)) == grant
    assert rbac_plan.group_for(ClusterGrant(Role.VIEWER, "web")) == "pilothouse:viewer:ns:web"
    for other in ["system:masters", "pilothouse:nobody", "pilothouse:viewer:ns:", "viewer"]:
        assert rbac_plan.parse_group(other) is None


def test_a_namespace_gets_one_rolebinding_per_role_and_the_roles_it_contains() -> None:
    binding = Binding(SubjectKind.USER, "ann", Role.OPERATOR, Scope.of_namespace(CLUSTER, "web"))
    grants = rbac_plan.compute_rbac_grants([binding], CLUSTER)
    assert grants == {ClusterGrant(Role.OPERATOR, "web"), ClusterGrant(Role.VIEWER, "web")}
    assert rbac_plan.compute_rbac_grants([binding], "staging") == frozenset()
    cluster_wide = Binding(SubjectKind.USER, "ann", Role.OPERATOR, Scope.of_cluster(CLUSTER))
    assert rbac_plan.compute_rbac_grants([cluster_wide], CLUSTER) == frozenset()


@settings(max_examples=200, deadline=None)
@given(bindings, st.integers(min_value=1, max_value=200))
def test_object_count_does_not_grow_with_users(found: list[Binding], extra_users: int) -> None:
    plan = rbac_plan.plan_cluster_rbac(rbac_plan.compute_rbac_grants(found, CLUSTER))
    namespaces = {b.scope.namespace for b in found if b.scope.cluster == CLUSTER and b.scope.namespace}
    assert len(plan) <= FIXED + len(Role) * len(namespaces)
    assert len(_refs(plan)) == len(plan)  # no duplicates
    # The same roles at the same scopes for many more users: the very same objects.
    crowd = found + [
        Binding(SubjectKind.USER, f"extra{i}", b.role, b.scope) for i in range(extra_users) for b in found[:3]
    ]
    assert rbac_plan.plan_cluster_rbac(rbac_plan.compute_rbac_grants(crowd, CLUSTER)) == plan


@settings(max_examples=300, deadline=None)
@given(bindings, users, st.lists(teams, max_size=2), st.lists(st.tuples(roles, scopes), max_size=3))
def test_every_group_a_certificate_carries_is_bound(
    found: list[Binding], user: str, member_of: list[str], token: list[tuple[Role, Scope]]
) -> None:
    """Whatever a user (or their restricted token) gets in a certificate, the plan binds."""
    principal = principal_for(found, user=user, teams=member_of)
    token_grants = [Grant(role, scope) for role, scope in token]
    if token:
        principal = Principal(
            principal.name,
            principal.grants,
            user=user,
            teams=principal.teams,
            restriction=tuple(token_grants),
        )
    plan = rbac_plan.plan_cluster_rbac(
        rbac_plan.compute_rbac_grants(found, CLUSTER, token_grants=token_grants)
    )
    carried = set(rbac_plan.groups_for(compute_cluster_access(principal, CLUSTER)))
    assert carried <= _bound_groups(plan)


@settings(max_examples=200, deadline=None)
@given(bindings, bindings)
def test_changes_converge_and_delete_what_is_no_longer_wanted(
    before: list[Binding], after: list[Binding]
) -> None:
    old = rbac_plan.plan_cluster_rbac(rbac_plan.compute_rbac_grants(before, CLUSTER))
    new = rbac_plan.plan_cluster_rbac(rbac_plan.compute_rbac_grants(after, CLUSTER))
    changes = rbac_plan.plan_rbac_changes(new, old, namespaces=NAMESPACES)
    assert set(changes.delete) == _refs(old) - _refs(new)
    assert _refs(changes.apply) == _refs(new) - _refs(old)  # objects in both are identical
    assert rbac_plan.plan_rbac_changes(new, new, namespaces=NAMESPACES).empty


def _as_served(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the API server returns: extra metadata, defaulted fields, aggregated rules filled in."""
    served = copy.deepcopy(manifest)
    served["metadata"].update(uid="1234", resourceVersion="42", managedFields=[{"manager": "pilothouse"}])
    served["metadata"]["labels"]["extra"] = "kept"
    if "aggregationRule" in served:
        served["rules"] = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    for rule in served.get("rules", []):
        rule.setdefault("resourceNames", None)
    return served


def test_what_the_server_echoes_counts_as_unchanged_and_drift_is_repaired() -> None:
    desired = rbac_plan.plan_cluster_rbac([ClusterGrant(Role.VIEWER, "web")])
    observed = [_as_served(o) for o in desired]
    assert rbac_plan.plan_rbac_changes(desired, observed, namespaces=["web"]).empty
    drifted = copy.deepcopy(observed)
    drifted[-1]["subjects"].append(
        {"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}
    )
    del drifted[0]["metadata"]["labels"][MANAGED_BY_LABEL]
    changes = rbac_plan.plan_rbac_changes(desired, drifted, namespaces=["web"])
    assert [rbac_plan.ObjectRef.of(m) for m in changes.apply] == [
        rbac_plan.ObjectRef.of(desired[0]),
        rbac_plan.ObjectRef.of(desired[-1]),
    ]


def test_a_missing_namespace_waits_and_a_stale_rolebinding_goes() -> None:
    desired = rbac_plan.plan_cluster_rbac(
        [ClusterGrant(Role.VIEWER, "web"), ClusterGrant(Role.VIEWER, "new")]
    )
    stale = rbac_plan.role_binding(Role.OPERATOR, "web")
    changes = rbac_plan.plan_rbac_changes(desired, [*desired[:FIXED], stale], namespaces=["web"])
    assert changes.waiting == ("new",)
    assert [str(rbac_plan.ObjectRef.of(m)) for m in changes.apply] == ["RoleBinding web/pilothouse:viewer"]
    assert [str(r) for r in changes.delete] == ["RoleBinding web/pilothouse:operator"]
