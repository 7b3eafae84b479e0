"""Who can: Kubernetes RBAC evaluated like the RBAC authorizer, Pilothouse's groups expanded."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.identity import rbac_plan
from pilothouse.identity.policy import Binding, ClusterGrant, Role, Scope, SubjectKind
from pilothouse.identity.who_can import AccessQuery, ClusterRbac, Holder, compute_who_can

CLUSTER = "prod"


def _cluster_role(name: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "ClusterRole", "metadata": {"name": name}, "rules": list(rules)}


def _binding(
    kind: str, name: str, role_kind: str, role: str, *subjects: tuple[str, str], ns: str = ""
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **({"namespace": ns} if ns else {})}
    return {
        "kind": kind,
        "metadata": meta,
        "roleRef": {"kind": role_kind, "name": role, "apiGroup": "rbac.authorization.k8s.io"},
        "subjects": [
            {"kind": k, "name": n, **({"namespace": "kube-system"} if k == "ServiceAccount" else {})}
            for k, n in subjects
        ],
    }


RBAC = ClusterRbac(
    cluster_roles=[
        _cluster_role("cluster-admin", {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
        _cluster_role(
            "pod-reader", {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}
        ),
        _cluster_role("log-reader", {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}),
        _cluster_role("scaler", {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["update"]}),
        _cluster_role(
            "one-config",
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["a"]},
        ),
        _cluster_role("urls", {"nonResourceURLs": ["*"], "verbs": ["*"]}),
    ],
    roles=[
        {
            "kind": "Role",
            "metadata": {"name": "deleter", "namespace": "web"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}],
        }
    ],
    cluster_role_bindings=[
        _binding(
            "ClusterRoleBinding", "cluster-admin", "ClusterRole", "cluster-admin", ("Group", "system:masters")
        ),
        _binding("ClusterRoleBinding", "readers", "ClusterRole", "pod-reader", ("User", "rita")),
        _binding("ClusterRoleBinding", "logs", "ClusterRole", "log-reader", ("User", "lou")),
        _binding("ClusterRoleBinding", "urls", "ClusterRole", "urls", ("User", "nobody")),
        _binding("ClusterRoleBinding", "cfg", "ClusterRole", "one-config", ("User", "carl")),
        _binding("ClusterRoleBinding", "scale", "ClusterRole", "scaler", ("ServiceAccount", "hpa")),
    ],
    role_bindings=[
        _binding("RoleBinding", "del", "Role", "deleter", ("User", "dora"), ns="web"),
        _binding("RoleBinding", "read", "ClusterRole", "pod-reader", ("Group", "web-team"), ns="web"),
        _binding(
            "RoleBinding", "other", "Role", "deleter", ("User", "ghost"), ns="api"
        ),  # no such Role in api
    ],
)


def _who(query: AccessQuery, rbac: ClusterRbac = RBAC, **kwargs: Any) -> set[tuple[str, str, str | None]]:
    return {(h.kind, h.name, h.namespace) for h in compute_who_can(rbac, query, cluster=CLUSTER, **kwargs)}


def test_cluster_and_namespace_grants() -> None:
    found = _who(AccessQuery("list", "", "pods"))
    assert found == {
        ("Group", "system:masters", None),
        ("User", "rita", None),
        ("Group", "web-team", "web"),
    }
    assert ("User", "dora", "web") in _who(AccessQuery("delete", "", "pods"))
    assert ("User", "dora", "web") not in _who(AccessQuery("delete", "", "pods", namespace="api"))
    assert ("User", "ghost", "api") not in _who(AccessQuery("delete", "", "pods"))


def test_namespace_filter_keeps_cluster_wide_grants() -> None:
    assert _who(AccessQuery("list", "", "pods", namespace="api")) == {
        ("Group", "system:masters", None),
        ("User", "rita", None),
    }


def test_rolebindings_grant_nothing_on_cluster_scoped_resources() -> None:
    assert _who(AccessQuery("list", "", "pods", namespaced=False)) == {
        ("Group", "system:masters", None),
        ("User", "rita", None),
    }


@pytest.mark.parametrize(
    ("query", "who"),
    [
        (AccessQuery("get", "", "pods", "log"), "lou"),
        (AccessQuery("update", "apps", "deployments", "scale"), "system:serviceaccount:kube-system:hpa"),
    ],
)
def test_subresources_match_exactly_or_by_wildcard(query: AccessQuery, who: str) -> None:
    assert who in {name for _k, name, _ns in _who(query)}
    assert who not in {name for _k, name, _ns in _who(AccessQuery(query.verb, query.group, query.resource))}


def test_resource_names_are_reported_and_non_resource_rules_ignored() -> None:
    holders = compute_who_can(RBAC, AccessQuery("get", "", "configmaps"), cluster=CLUSTER)
    carl = next(h for h in holders if h.name == "carl")
    assert carl.only_names == ("a",)
    assert "nobody" not in {h.name for h in holders}


def test_system_masters_is_listed_even_without_a_binding() -> None:
    holders = compute_who_can(
        ClusterRbac(), AccessQuery("delete", "", "nodes", namespaced=False), cluster=CLUSTER
    )
    assert [(h.kind, h.name) for h in holders] == [("Group", "system:masters")]


def test_pilothouse_groups_expand_to_the_users_and_teams_bound() -> None:
    plan = rbac_plan.plan_cluster_rbac([ClusterGrant(Role.VIEWER, "web")])
    view_rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    roles = [{**o, "rules": o.get("rules", view_rules)} for o in plan if o["kind"] == "ClusterRole"]
    rbac = ClusterRbac(
        cluster_roles=roles,
        cluster_role_bindings=[o for o in plan if o["kind"] == "ClusterRoleBinding"],
        role_bindings=[
            *(o for o in plan if o["kind"] == "RoleBinding"),
            # A look-alike binding nobody labelled: its group is the cluster's, not Pilothouse's.
            _binding(
                "RoleBinding",
                "fake",
                "ClusterRole",
                "pilothouse:viewer",
                ("Group", "pilothouse:viewer"),
                ns="db",
            ),
        ],
    )
    bindings = [
        Binding(SubjectKind.USER, "vera", Role.VIEWER, Scope.of_cluster(CLUSTER)),
        Binding(SubjectKind.USER, "nina", Role.VIEWER, Scope.of_namespace(CLUSTER, "web")),
        Binding(SubjectKind.TEAM, "sre", Role.OPERATOR, Scope.platform()),
        Binding(SubjectKind.USER, "olga", Role.VIEWER, Scope.of_cluster("staging")),
    ]
    holders = compute_who_can(
        rbac,
        AccessQuery("list", "", "pods"),
        cluster=CLUSTER,
        bindings=bindings,
        teams={"sre": ["sam", "sue"]},
    )
    pilothouse = {(h.kind, h.name, h.namespace) for h in holders if h.source == "pilothouse"}
    assert {("user", "vera", None), ("user", "nina", "web"), ("team", "sre", None)} <= pilothouse
    assert ("Group", "pilothouse:viewer", None) in pilothouse
    assert not any(name == "olga" for _k, name, _ns in pilothouse)
    sre = next(h for h in holders if h.name == "sre")
    assert sre.members == ("sam", "sue")
    assert "operator at platform" in sre.via
    fake = next(h for h in holders if h.namespace == "db")
    assert fake == Holder("cluster", "Group", "pilothouse:viewer", "db", fake.via)
