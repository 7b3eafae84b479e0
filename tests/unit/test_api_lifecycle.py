"""The API lifecycle table generated from k8s.io/api, and the planner records built from it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest

from pilothouse.fleet import api_lifecycle as al
from pilothouse.fleet import upgrade_plan as up
from tests.unit.test_upgrade_plan import FACTS

ROOT = Path(__file__).resolve().parents[2]


def test_the_table_ships_with_the_package_and_names_its_sources() -> None:
    assert resources.files("pilothouse.fleet").joinpath("api_lifecycle.json").is_file()
    assert al.modules()[0] == "k8s.io/api@v0.36.3"


@pytest.mark.skipif(shutil.which("go") is None, reason="needs the Go toolchain and its module cache")
def test_the_committed_table_is_what_the_generator_writes() -> None:
    """The data file is generated, never edited by hand."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_api_lifecycle.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_kinds_removed_long_ago_are_known() -> None:
    deployment = al.lookup("extensions", "v1beta1", "Deployment")
    assert deployment is not None
    assert (deployment.introduced, deployment.deprecated, deployment.removed) == (
        al.Minor(1, 1),
        al.Minor(1, 8),
        al.Minor(1, 16),
    )
    assert str(deployment.replacement) == "apps/v1 Deployment"
    # dropped from k8s.io/api v0.36, taken from v0.35
    hpa = al.lookup("autoscaling", "v2beta2", "HorizontalPodAutoscaler")
    assert hpa is not None
    assert hpa.removed == al.Minor(1, 26)
    assert hpa.source == "k8s.io/api@v0.35.4"


def test_core_types_have_the_empty_group_and_ga_types_no_end() -> None:
    config_map = al.lookup("", "v1", "ConfigMap")
    assert config_map is not None
    assert config_map.type.api_version == "v1"
    assert config_map.deprecated is None
    assert config_map.removed is None
    assert al.status_in(config_map, "1.36.3") is al.ApiStatus.SERVED
    assert al.lookup_api_version("apps/v1", "Deployment") == al.lookup("apps", "v1", "Deployment")


def test_unknown_types_and_custom_resources_are_not_in_the_table() -> None:
    assert al.lookup("example.com", "v1", "Widget") is None
    assert al.lookup("apps", "v1", "Widget") is None
    assert al.kind_for_resource("example.com", "v1", "widgets") is None


@pytest.mark.parametrize(
    ("release", "status"),
    [
        ("1.25", al.ApiStatus.NOT_YET),
        ("1.26", al.ApiStatus.SERVED),
        ("1.28.9", al.ApiStatus.SERVED),
        ("1.29", al.ApiStatus.DEPRECATED),
        ("v1.31.0", al.ApiStatus.DEPRECATED),
        ("1.32", al.ApiStatus.REMOVED),
        ("1.36.3", al.ApiStatus.REMOVED),
    ],
)
def test_status_in_a_release(release: str, status: al.ApiStatus) -> None:
    flow_schema = al.lookup("flowcontrol.apiserver.k8s.io", "v1beta3", "FlowSchema")
    assert flow_schema is not None
    assert al.status_in(flow_schema, release) is status
    assert al.status_in(flow_schema, al.Minor.parse(release)) is status


@pytest.mark.parametrize("text", ["1.36", "1.36.3", "v1.36.3", "1.36.3-kwok"])
def test_minor_parsing(text: str) -> None:
    assert al.Minor.parse(text) == al.Minor(1, 36)
    assert str(al.Minor.parse(text)) == "1.36"


@pytest.mark.parametrize("text", ["", "1", "latest", "1.x"])
def test_malformed_releases_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes release"):
        al.Minor.parse(text)


@pytest.mark.parametrize(
    ("group", "version", "resource", "kind"),
    [
        ("apps", "v1", "deployments", "Deployment"),
        ("networking.k8s.io", "v1", "ingresses", "Ingress"),
        ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
        ("", "v1", "endpoints", "Endpoints"),
        (
            "flowcontrol.apiserver.k8s.io",
            "v1beta3",
            "prioritylevelconfigurations",
            "PriorityLevelConfiguration",
        ),
    ],
)
def test_resources_map_to_kinds(group: str, version: str, resource: str, kind: str) -> None:
    assert al.kind_for_resource(group, version, resource) == kind


def test_api_use_reports_only_what_the_target_deprecates_or_removes() -> None:
    target = al.Minor(1, 36)
    removed = al.api_use("extensions", "v1beta1", "Ingress", "last-applied-configuration of x", target)
    assert removed == up.ApiUse(
        "extensions",
        "v1beta1",
        "Ingress",
        "last-applied-configuration of x",
        deprecated_in="1.14",
        removed_in="1.22",
        replacement="networking.k8s.io/v1 Ingress",
    )
    deprecated = al.api_use(
        "networking.k8s.io", "v1beta1", "ServiceCIDR", "Helm release a/b (revision 1)", target
    )
    assert deprecated is not None
    assert (deprecated.deprecated_in, deprecated.removed_in) == ("1.34", "1.37")
    assert al.api_use("apps", "v1", "Deployment", "x", target) is None  # GA, never removed
    assert al.api_use("example.com", "v1", "Widget", "x", target) is None  # not a built-in type
    assert al.api_use("networking.k8s.io", "v1beta1", "ServiceCIDR", "x", al.Minor(1, 33)) is None  # not yet
    assert al.needs_attention("extensions", "v1beta1", "Ingress", target)
    assert not al.needs_attention("", "v1", "ConfigMap", target)


def test_requested_apis_take_their_kind_and_releases_from_the_table() -> None:
    use = al.requested_api_use(
        "flowcontrol.apiserver.k8s.io", "v1beta3", "flowschemas", "1.32", "1.31.2", source="client requests"
    )
    assert (use.kind, use.deprecated_in, use.removed_in) == ("FlowSchema", "1.29", "1.32")
    assert use.replacement == "flowcontrol.apiserver.k8s.io/v1 FlowSchema"


def test_requested_apis_the_table_does_not_know_keep_the_metric() -> None:
    """A deprecated version of a custom resource: the server reports it deprecated now."""
    use = al.requested_api_use("example.com", "v1alpha1", "widgets", "", "1.36.3", source="client requests")
    assert (use.kind, use.deprecated_in, use.removed_in, use.replacement) == ("widgets", "1.36", None, "")
    use = al.requested_api_use(
        "example.com", "v1alpha1", "widgets", "1.38", "1.36.3", source="client requests"
    )
    assert use.removed_in == "1.38"


def test_the_planner_blocks_on_uses_built_from_the_table() -> None:
    facts = replace(FACTS, current="1.36.3", target="1.37.2", installed=("1.36.3", "1.37.2"))
    target = al.Minor.parse(facts.target)
    uses = [
        al.api_use(
            "extensions", "v1beta1", "Deployment", "last-applied-configuration of Deployment a/b", target
        ),
        al.api_use("networking.k8s.io", "v1beta1", "IPAddress", "Helm release a/c (revision 2)", target),
    ]
    plan = up.plan_upgrade(replace(facts, api_uses=[u for u in uses if u is not None]))
    assert [(f.code, f.subject) for f in plan.findings] == [
        ("api-removed", "networking.k8s.io/v1beta1/IPAddress"),  # removed in 1.37: this upgrade
        ("api-removed-earlier", "extensions/v1beta1/Deployment"),  # removed in 1.16: broken already
    ]
    assert plan.blockers[0].hint == "migrate to a served version"  # upstream names no replacement
    assert plan.warnings[0].hint.startswith("use apps/v1 Deployment")
