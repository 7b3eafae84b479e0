"""The pure parts of the API usage scan: last-applied annotations, Helm release Secrets, discovery."""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import replace
from typing import Any

import pytest

from pilothouse.fleet import api_lifecycle as al
from pilothouse.fleet import upgrade_plan as up
from pilothouse.kube import api_usage
from tests.unit.test_upgrade_plan import FACTS

MANIFEST = """\
---
# Source: shop/templates/deployment.yaml
apiVersion: extensions/v1beta1
kind: Deployment
metadata:
  name: web
---
# Source: shop/templates/empty.yaml
---
# Source: shop/templates/config.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: web
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: again
---
apiVersion: v1
kind: List
items:
- apiVersion: policy/v1beta1
  kind: PodDisruptionBudget
  metadata: {name: web}
- just a string
"""


def helm_secret_data(release: dict[str, Any], *, compress: bool = True) -> str:
    """``.data.release`` of a ``helm.sh/release.v1`` Secret as the API returns it: Helm stores
    base64(gzip(JSON)), and the Secret's data is base64 again."""
    raw = json.dumps(release).encode()
    helm_encoded = base64.b64encode(gzip.compress(raw) if compress else raw)
    return base64.b64encode(helm_encoded).decode()


RELEASE: dict[str, Any] = {
    "name": "shop",
    "namespace": "prod",
    "version": 7,
    "info": {"status": "deployed"},
    "chart": {"metadata": {"name": "shop", "version": "1.2.3"}},
    "manifest": MANIFEST,
    "hooks": [
        {
            "name": "shop-migrate",
            "manifest": "apiVersion: batch/v1beta1\nkind: CronJob\nmetadata:\n  name: shop-migrate\n",
        }
    ],
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"apiVersion":"extensions/v1beta1","kind":"Deployment","metadata":{"name":"web"}}\n',
            ("extensions/v1beta1", "Deployment"),
        ),
        ('{"apiVersion":"v1","kind":"ConfigMap","data":{"a":"b"}}', ("v1", "ConfigMap")),
        ('{"apiVersion":"v1","kind":', None),  # truncated
        ('{"apiVersion":"v1"}', None),  # no kind
        ('{"apiVersion":7,"kind":"ConfigMap"}', None),
        ('["apiVersion","kind"]', None),
        ("", None),
    ],
)
def test_last_applied_configuration(text: str, expected: tuple[str, str] | None) -> None:
    assert api_usage.parse_last_applied(text) == expected


def test_manifest_documents_each_type_once_with_list_items() -> None:
    types, malformed = api_usage.manifest_types(MANIFEST)
    assert types == [
        ("extensions/v1beta1", "Deployment"),
        ("v1", "ConfigMap"),
        ("v1", "List"),
        ("policy/v1beta1", "PodDisruptionBudget"),
    ]
    assert malformed == 1  # the string item


def test_a_manifest_that_stops_being_yaml_keeps_what_came_before() -> None:
    types, malformed = api_usage.manifest_types("apiVersion: v1\nkind: Service\n---\nkind: [unclosed\n")
    assert types == [("v1", "Service")]
    assert malformed == 1


@pytest.mark.parametrize("compress", [True, False])
def test_helm_release_secret_round_trip(compress: bool) -> None:
    assert api_usage.decode_helm_release(helm_secret_data(RELEASE, compress=compress)) == RELEASE


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("not base64!", "not base64"),
        (base64.b64encode(b"plain text, not base64 inside").decode(), "not base64"),
        (base64.b64encode(base64.b64encode(b"\x1f\x8bnot really gzip")).decode(), "not gzip"),
        (base64.b64encode(base64.b64encode(gzip.compress(b"{}")[:12])).decode(), "gzip"),
        (base64.b64encode(base64.b64encode(gzip.compress(b"[1, 2]"))).decode(), "not a release"),
        (base64.b64encode(base64.b64encode(b"{nope")).decode(), "not JSON"),
    ],
)
def test_malformed_helm_releases_are_refused(data: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        api_usage.decode_helm_release(data)


def test_helm_release_types_cover_manifest_and_hooks() -> None:
    release = api_usage.helm_release_types(api_usage.decode_helm_release(helm_secret_data(RELEASE)))
    assert (release.namespace, release.name, release.revision, release.status) == (
        "prod",
        "shop",
        7,
        "deployed",
    )
    assert release.source == "Helm release prod/shop (revision 7)"
    assert ("extensions/v1beta1", "Deployment") in release.types
    assert release.hook_types == (("batch/v1beta1", "CronJob"),)
    assert release.malformed == 1


def test_helm_release_names_come_from_labels_or_the_secret_name() -> None:
    labelled: dict[str, Any] = {
        "name": "sh.helm.release.v1.shop.v12",
        "namespace": "prod",
        "labels": {"name": "shop", "owner": "helm", "status": "deployed", "version": "12"},
    }
    assert api_usage.helm_release_ref(labelled) == api_usage.HelmReleaseRef(
        "prod", labelled["name"], "shop", 12, "deployed"
    )
    bare = {"name": "sh.helm.release.v1.my.app.v3", "namespace": "a"}
    assert api_usage.helm_release_ref(bare) == api_usage.HelmReleaseRef("a", bare["name"], "my.app", 3, "")
    assert api_usage.helm_release_ref({"name": "something-else", "namespace": "a"}) is None


def test_only_each_release_s_newest_live_revision_is_read() -> None:
    def ref(namespace: str, release: str, revision: int, status: str) -> api_usage.HelmReleaseRef:
        return api_usage.HelmReleaseRef(
            namespace, f"sh.helm.release.v1.{release}.v{revision}", release, revision, status
        )

    refs = [
        ref("prod", "shop", 2, "superseded"),
        ref("prod", "shop", 10, "deployed"),  # 10 sorts before 2 by name; by revision it is newest
        ref("prod", "shop", 9, "superseded"),
        ref("test", "shop", 1, "failed"),
        ref("prod", "gone", 4, "uninstalled"),  # uninstalled with --keep-history
        ref("prod", "gone", 3, "superseded"),
    ]
    assert [(r.namespace, r.release, r.revision) for r in api_usage.newest_revisions(refs)] == [
        ("prod", "shop", 10),
        ("test", "shop", 1),
    ]


def test_discovery_lists_each_resource_once_in_its_first_version() -> None:
    def resource(name: str, kind: str, verbs: list[str], namespaced: bool = True) -> dict[str, Any]:
        return {"name": name, "kind": kind, "verbs": verbs, "namespaced": namespaced}

    listing = ["get", "list", "watch"]
    discovered = [
        (
            "",
            "v1",
            {
                "resources": [
                    resource("configmaps", "ConfigMap", listing),
                    resource("pods/log", "Pod", ["get"]),
                    resource("componentstatuses", "ComponentStatus", listing, False),
                    resource("bindings", "Binding", ["create"]),
                ]
            },
        ),
        (
            "autoscaling",
            "v2",
            {"resources": [resource("horizontalpodautoscalers", "HorizontalPodAutoscaler", listing)]},
        ),
        (
            "autoscaling",
            "v1",
            {"resources": [resource("horizontalpodautoscalers", "HorizontalPodAutoscaler", listing)]},
        ),
        ("events.k8s.io", "v1", {"resources": [resource("events", "Event", listing)]}),
        ("example.com", "v1", {"resources": [resource("widgets", "Widget", listing, False)]}),
        ("example.com", "v1beta1", {"resources": [resource("gadgets", "Gadget", listing)]}),
    ]
    found = api_usage.listable_resources(discovered)
    assert [(r.group, r.version, r.name) for r in found] == [
        ("", "v1", "configmaps"),
        ("autoscaling", "v2", "horizontalpodautoscalers"),
        ("example.com", "v1beta1", "gadgets"),  # only served by a non-preferred version
        ("example.com", "v1", "widgets"),
    ]
    assert found[-1].path() == "/apis/example.com/v1/widgets"


def test_removed_apis_in_a_helm_release_are_reported() -> None:
    """Helm refuses to install a removed API, so this case is built rather than installed."""
    release = api_usage.helm_release_types(api_usage.decode_helm_release(helm_secret_data(RELEASE)))
    target = al.Minor.parse(FACTS.target)
    uses = [
        al.api_use(*api_usage.split_api_version(api_version), kind, release.source, target)
        for api_version, kind in (*release.types, *release.hook_types)
    ]
    plan = up.plan_upgrade(replace(FACTS, api_uses=[u for u in uses if u is not None]))
    # Removed before the cluster's 1.35: `helm upgrade` of this release fails already.
    assert [(f.code, f.subject) for f in plan.findings] == [
        ("api-removed-earlier", "batch/v1beta1/CronJob"),
        ("api-removed-earlier", "extensions/v1beta1/Deployment"),
        ("api-removed-earlier", "policy/v1beta1/PodDisruptionBudget"),
    ]
    assert all("Helm release prod/shop (revision 7)" in f.message for f in plan.warnings)
