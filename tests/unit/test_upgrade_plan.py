"""The upgrade planner on plain data: version rules, health, skew, APIs, workloads, certificates."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from pilothouse import errors
from pilothouse.fleet import upgrade_plan as up

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
FACTS = up.UpgradeFacts(
    cluster="prod",
    provider="local",
    current="1.35.4",
    target="1.36.3",
    now=NOW,
    supported=("1.35.4", "1.36.3", "1.37.2"),
    installed=("1.35.4", "1.36.3"),
    control_planes=3,
    etcd_members=3,
    etcd_version={"1.35.4": "3.6.16", "1.36.3": "3.6.16", "1.37.2": "3.6.16"},
    failing_endpoints=(),
    kubelet_versions={"v1.35.4": 10},
)


def codes(plan: up.UpgradePlan, severity: up.Severity) -> list[str]:
    return [f.code for f in plan.findings if f.severity is severity]


def test_a_healthy_ha_cluster_one_minor_up_is_allowed_with_ordered_steps() -> None:
    plan = up.plan_upgrade(FACTS)

    assert plan.allowed
    assert plan.findings == ()
    assert [s.name for s in plan.steps] == [
        "preflight",
        "kube-apiserver-0",
        "kube-apiserver-1",
        "kube-apiserver-2",
        "kube-controller-manager-0",
        "kube-controller-manager-1",
        "kube-controller-manager-2",
        "kube-scheduler-0",
        "kube-scheduler-1",
        "kube-scheduler-2",
        "finalize",
    ]
    assert plan.to_dict()["allowed"] is True


def test_etcd_members_come_first_when_the_target_pins_another_etcd() -> None:
    facts = replace(
        FACTS, etcd_version={"1.35.4": "3.6.13", "1.36.3": "3.6.16"}, control_planes=1, etcd_members=1
    )
    names = [s.name for s in up.plan_upgrade(facts).steps]
    assert names[:3] == ["preflight", "etcd-0", "kube-apiserver-0"]


@pytest.mark.parametrize(
    ("current", "target", "code", "hint_part"),
    [
        ("1.34.4", "1.36.3", "version-skew", "upgrade to 1.35.4 first"),
        ("1.36.3", "1.36.3", "version-not-newer", "restore a backup"),
        ("1.36.3", "1.35.4", "version-not-newer", "restore a backup"),
        ("1.35.4", "1.36.9", "version-unknown", "supported"),
        ("1.36.3", "1.37.2", "binaries-missing", "pilothouse binaries install --version 1.37.2"),
    ],
)
def test_version_rules_block_with_a_way_forward(current: str, target: str, code: str, hint_part: str) -> None:
    plan = up.plan_upgrade(replace(FACTS, current=current, target=target))
    blocker = next(f for f in plan.blockers if f.code == code)
    assert not plan.allowed
    assert hint_part in blocker.hint + blocker.message


def test_a_malformed_version_is_bad_input() -> None:
    with pytest.raises(errors.InvalidInput, match="malformed target version 'latest'"):
        up.plan_upgrade(replace(FACTS, target="latest"))


def test_health_and_provider_block() -> None:
    unknown = up.plan_upgrade(replace(FACTS, failing_endpoints=None))
    failing = up.plan_upgrade(replace(FACTS, failing_endpoints=("kube-apiserver-1", "etcd-2")))
    imported = up.plan_upgrade(replace(FACTS, provider="import"))

    assert codes(unknown, up.Severity.BLOCKER) == ["cluster-unhealthy"]
    assert "kube-apiserver-1, etcd-2" in failing.blockers[0].message
    assert codes(imported, up.Severity.BLOCKER) == ["not-local"]


def test_kubelet_skew() -> None:
    facts = replace(FACTS, kubelet_versions={"v1.32.9": 2, "v1.33.1": 3, "v1.35.9": 1, "v1.35.4": 4})
    plan = up.plan_upgrade(facts)
    too_old = next(f for f in plan.blockers if f.code == "kubelet-too-old")
    newer = next(f for f in plan.warnings if f.code == "kubelet-newer")
    assert too_old.message.startswith("2 node(s)")  # 1.32 is 4 minors behind 1.36; 1.33 is allowed
    assert newer.message.startswith("1 node(s)")


def test_removed_apis_block_and_deprecated_ones_warn() -> None:
    uses = [
        up.ApiUse("example.io", "v1beta1", "Widget", "client requests", "1.33", "1.36"),
        up.ApiUse("networking.k8s.io", "v1beta1", "ServiceCIDR", "client requests", "1.33", "1.37"),
        up.ApiUse("networking.k8s.io", "v1beta1", "ServiceCIDR", "client requests", "1.33", "1.37"),
    ]
    plan = up.plan_upgrade(replace(FACTS, api_uses=uses))
    assert codes(plan, up.Severity.BLOCKER) == ["api-removed"]
    assert codes(plan, up.Severity.WARNING) == ["api-deprecated"]  # duplicates are one finding
    assert "removed in 1.36" in plan.blockers[0].message


def test_workload_risks_and_capacity_warn() -> None:
    facts = replace(
        FACTS,
        control_planes=1,
        pdbs=[up.PdbFacts("shop", "web", 0), up.PdbFacts("shop", "db", 1)],
        workloads=[
            up.WorkloadFacts("Deployment", "shop", "cart", 1),
            up.WorkloadFacts("Deployment", "shop", "web", 3),
            up.WorkloadFacts("DaemonSet", "kube-system", "agent", 1),
        ],
        cpu_request_ratio=0.93,
        memory_request_ratio=0.5,
    )
    plan = up.plan_upgrade(facts)
    assert plan.allowed
    assert codes(plan, up.Severity.WARNING) == [
        "capacity-headroom",
        "pdb-blocks-drain",
        "single-control-plane",
        "single-replica",
    ]
    assert [f.subject for f in plan.warnings if f.code in ("pdb-blocks-drain", "single-replica")] == [
        "shop/web",
        "shop/cart",
    ]
    assert "93% of allocatable cpu" in next(f for f in plan.warnings if f.code == "capacity-headroom").message


def test_certificates_near_or_past_expiry() -> None:
    certificates = {
        "apiserver.crt": NOW + timedelta(days=10),
        "ca.crt": NOW + timedelta(days=3000),
        "etcd/peer-0.crt": NOW - timedelta(minutes=1),
    }
    plan = up.plan_upgrade(replace(FACTS, certificates=certificates))
    assert [(f.code, f.subject) for f in plan.findings] == [
        ("certificate-expired", "etcd/peer-0.crt"),
        ("certificate-expiring", "apiserver.crt"),
    ]


def test_apis_removed_before_the_current_release_warn_instead_of_blocking() -> None:
    uses = [
        up.ApiUse("extensions", "v1beta1", "Deployment", "last-applied-configuration of a/b", "1.8", "1.16")
    ]
    plan = up.plan_upgrade(replace(FACTS, api_uses=uses))
    assert plan.allowed
    assert codes(plan, up.Severity.WARNING) == ["api-removed-earlier"]
    assert "re-applying that manifest fails already" in plan.warnings[0].hint


def test_an_incomplete_api_scan_is_said() -> None:
    plan = up.plan_upgrade(replace(FACTS, api_scan_gaps=("the scan stopped after 30s",)))
    assert codes(plan, up.Severity.WARNING) == ["api-scan-incomplete"]
    assert "the scan stopped after 30s" in plan.warnings[0].message
