"""The API usage scan against the shared cluster: a last-applied-configuration written as a
removed API, and a chart installed and upgraded with the real Helm CLI; then the upgrade
planner's facts and findings built from them.

Helm checks a chart against the API versions the cluster serves, so a release that uses a
removed API cannot be installed for real; that case is covered with a constructed release
(``tests/unit/test_api_usage_parsing.py``). Here a real release proves that the scan finds and
decodes what Helm actually writes, and reads only each release's newest revision.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from pilothouse import errors
from pilothouse.fleet import upgrade_plan
from pilothouse.kube import api_usage
from pilothouse.kube import client as kube_client
from pilothouse.kube.credentials import ClusterCredentials
from pilothouse.platform import Platform
from pilothouse.settings import Settings
from pilothouse.store.clusters import ClusterRecord
from tests.conftest import SHARED_CLUSTER

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "default"
APPLIED = "api-usage-e2e-applied"
MALFORMED = "api-usage-e2e-malformed"
RELEASE = "api-usage-e2e"
REMOVED_SOURCE = f"{api_usage.LAST_APPLIED} of ConfigMap {NAMESPACE}/{APPLIED}"


@pytest.fixture(scope="module")
def helm(settings: Settings) -> str:
    """The Helm CLI built from its Go module (cached: instant after the first build)."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "build-helm.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "PILOTHOUSE_CACHE_DIR": str(settings.cache_dir)},
    )
    assert result.returncode == 0, f"scripts/build-helm.sh failed:\n{result.stderr[-2000:]}"
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def creds(platform: Platform, shared_cluster: ClusterRecord) -> ClusterCredentials:
    return platform.clusters.credentials(SHARED_CLUSTER)


@pytest.fixture
def helm_env(creds: ClusterCredentials, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Helm's environment: the shared cluster's admin kubeconfig (0600) and private Helm dirs."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.touch(mode=0o600)
    kubeconfig.write_text(creds.to_yaml(SHARED_CLUSTER))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "KUBECONFIG": str(kubeconfig),
        "HELM_CONFIG_HOME": str(tmp_path / "helm" / "config"),
        "HELM_CACHE_HOME": str(tmp_path / "helm" / "cache"),
        "HELM_DATA_HOME": str(tmp_path / "helm" / "data"),
    }
    yield env
    kubeconfig.unlink()


def _chart(directory: Path) -> Path:
    (directory / "templates").mkdir(parents=True)
    (directory / "Chart.yaml").write_text("apiVersion: v2\nname: api-usage-e2e\nversion: 0.1.0\n")
    (directory / "templates" / "config.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
        "data:\n  colour: {{ .Values.colour | quote }}\n"
    )
    (directory / "values.yaml").write_text("colour: blue\n")
    return directory


async def _helm(helm: str, env: dict[str, str], *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        helm,
        *args,
        "--kubeconfig",
        env["KUBECONFIG"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, f"helm {' '.join(args)}: {err.decode()[-2000:]}"
    return out.decode()


@pytest.fixture
async def workloads(
    creds: ClusterCredentials, helm: str, helm_env: dict[str, str], tmp_path: Path
) -> AsyncIterator[None]:
    """A ConfigMap applied (so its annotation says) as a removed FlowSchema version, one with a
    malformed annotation, and a Helm release at revision 2; all removed afterwards."""
    applied = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1beta3",
        "kind": "FlowSchema",
        "metadata": {"name": APPLIED},
        "spec": {"priorityLevelConfiguration": {"name": "workload-low"}},
    }
    annotations = {APPLIED: json.dumps(applied), MALFORMED: '{"apiVersion": "v1", "kind": '}
    chart = _chart(tmp_path / "chart")
    async with kube_client.open_client(creds) as client:
        for name, text in annotations.items():
            meta = ObjectMeta(name=name, namespace=NAMESPACE, annotations={api_usage.LAST_APPLIED: text})
            await client.create(ConfigMap(metadata=meta, data={"a": "b"}))
        try:
            await _helm(helm, helm_env, "install", RELEASE, str(chart), "--namespace", NAMESPACE)
            await _helm(
                helm,
                helm_env,
                "upgrade",
                RELEASE,
                str(chart),
                "--namespace",
                NAMESPACE,
                "--set",
                "colour=red",
            )
            yield
        finally:
            await _helm(helm, helm_env, "uninstall", RELEASE, "--namespace", NAMESPACE, "--ignore-not-found")
            for name in annotations:
                await client.delete(ConfigMap, name, namespace=NAMESPACE)


async def test_the_scan_reads_annotations_and_real_helm_releases(
    creds: ClusterCredentials, workloads: None
) -> None:
    scan = await api_usage.scan(creds, timeout=30.0)

    assert scan.complete
    assert scan.skipped == []
    assert scan.resource_types > 20  # every listable built-in resource type
    assert scan.objects >= scan.annotated >= 2
    assert scan.malformed >= 1  # the truncated annotation is counted, not fatal
    assert (
        api_usage.ApiUsage(
            "flowcontrol.apiserver.k8s.io/v1beta3",
            "FlowSchema",
            api_usage.Origin.LAST_APPLIED,
            REMOVED_SOURCE,
        )
        in scan.uses
    )
    helm_sources = {u.source for u in scan.uses if u.origin is api_usage.Origin.HELM_RELEASE}
    assert f"Helm release {NAMESPACE}/{RELEASE} (revision 2)" in helm_sources
    assert f"Helm release {NAMESPACE}/{RELEASE} (revision 1)" not in helm_sources  # history is not read
    helm_uses = [u for u in scan.uses if u.source == f"Helm release {NAMESPACE}/{RELEASE} (revision 2)"]
    assert [(u.api_version, u.kind) for u in helm_uses] == [("v1", "ConfigMap")]
    assert scan.helm_releases >= 1


async def test_only_kept_types_are_recorded_and_the_rest_counted(
    creds: ClusterCredentials, workloads: None
) -> None:
    scan = await api_usage.scan(creds, keep=lambda group, version, kind: kind == "FlowSchema", per_type=1)
    assert {(u.api_version, u.kind) for u in scan.uses} == {
        ("flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema")
    }
    assert scan.counts[("v1", "ConfigMap")] >= 1  # the Helm release's ConfigMap, counted only


async def test_the_upgrade_facts_and_plan_report_the_removed_api(
    platform: Platform, creds: ClusterCredentials, workloads: None
) -> None:
    facts = await platform.upgrades.facts(SHARED_CLUSTER, "1.36.3")

    assert (
        upgrade_plan.ApiUse(
            "flowcontrol.apiserver.k8s.io",
            "v1beta3",
            "FlowSchema",
            REMOVED_SOURCE,
            deprecated_in="1.29",
            removed_in="1.32",
            replacement="flowcontrol.apiserver.k8s.io/v1 FlowSchema",
        )
        in facts.api_uses
    )
    release = f"Helm release {NAMESPACE}/{RELEASE} "
    assert not [u for u in facts.api_uses if u.source.startswith(release)]  # a v1 ConfigMap: nothing to say
    # The shared cluster already runs 1.36.3 (the newest supported release), so the planner is
    # asked about the same facts as if it ran an older release: one that still served v1beta3
    # (1.31: this upgrade removes it, a blocker), and 1.35 (removed already: a warning).
    plan = upgrade_plan.plan_upgrade(replace(facts, current="1.31.0"))
    removed = [f for f in plan.blockers if f.code == "api-removed" and APPLIED in f.message]
    assert [(f.subject, f.hint) for f in removed] == [
        ("flowcontrol.apiserver.k8s.io/v1beta3/FlowSchema", "use flowcontrol.apiserver.k8s.io/v1 FlowSchema")
    ]
    later = upgrade_plan.plan_upgrade(replace(facts, current="1.35.4"))
    assert [
        f.subject for f in later.warnings if f.code == "api-removed-earlier" and APPLIED in f.message
    ] == ["flowcontrol.apiserver.k8s.io/v1beta3/FlowSchema"]


async def test_a_scan_out_of_time_returns_what_it_read(creds: ClusterCredentials) -> None:
    scan = await api_usage.scan(creds, timeout=0.01)
    assert not scan.complete


async def test_an_unreachable_cluster_is_a_typed_error(creds: ClusterCredentials) -> None:
    with pytest.raises(errors.ClusterUnreachable, match="cannot connect"):
        await api_usage.scan(creds.with_server("https://127.0.0.1:1"))
