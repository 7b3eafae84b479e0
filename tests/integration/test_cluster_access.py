"""Short-lived cluster credentials and Pilothouse's roles in the shared cluster's real RBAC.

Users get client certificates signed by the shared cluster's CA
(``identity.cluster_access``); the real kube-apiserver (RBAC mode) decides
what they may do through the fixed set of ClusterRoles and bindings
``identity.rbac_sync`` keeps there. A viewer lists pods and cannot delete
them or read Secrets; a namespace binding reaches its namespace only; a
cluster without a grant, or an imported one, gets no credentials; a removed
binding gets no new credentials, and the old ones are refused (401) by the
API server once their NotAfter passes. who-can answers from the cluster's
RBAC with Pilothouse's users expanded, through the service, the API and the
CLI. Every binding and object made here is removed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Pod, Secret

from pilothouse import errors
from pilothouse.api.app import create_app
from pilothouse.fleet import requests
from pilothouse.identity import rbac_plan
from pilothouse.identity.accounts import Accounts, LoginAttempt
from pilothouse.identity.policy import Role, Scope, SubjectKind
from pilothouse.identity.rbac_sync import RbacSyncResult
from pilothouse.kube import client as kube_client
from pilothouse.kube import rbac as kube_rbac
from pilothouse.kube.credentials import ClusterCredentials, parse_kubeconfig
from pilothouse.platform import Platform
from pilothouse.store.clusters import ClusterRecord
from pilothouse.store.identity import BindingRecord
from tests.conftest import SHARED_CLUSTER
from tests.integration.api_server import serving
from tests.integration.kube_helpers import eventually

PILOTHOUSE = Path(sys.executable).with_name("pilothouse")
ADMIN = Accounts.local_operator("test")
NAMESPACE = "ca-web"
PASSWORD = "cluster access passphrase 7"
VERA, NINA, OLGA = "ca-vera", "ca-nina", "ca-olga"  # viewer of the cluster, of one namespace, of nothing


@pytest.fixture(scope="module")
def people(platform: Platform) -> Iterator[None]:
    for name in (VERA, NINA, OLGA):
        if platform.identity.store.find_user(name) is None:
            platform.identity.create_user(name, PASSWORD)
    yield
    for name in (VERA, NINA, OLGA):
        platform.identity.set_disabled(name, True)


@pytest.fixture(scope="module")
async def namespace(shared_cluster: ClusterRecord, platform: Platform) -> AsyncIterator[str]:
    admin = platform.clusters.credentials(SHARED_CLUSTER)
    async with kube_client.open_client(admin) as client:
        await client.apply(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
    yield NAMESPACE
    async with kube_client.open_client(admin) as client:
        await client.delete(Namespace, NAMESPACE)


@contextlib.contextmanager
def bound(platform: Platform, user: str, role: Role, scope: Scope) -> Iterator[BindingRecord]:
    record = platform.identity.bind(ADMIN, SubjectKind.USER, user, role, scope)
    try:
        yield record
    finally:
        with contextlib.suppress(errors.NotFound):
            platform.identity.unbind(ADMIN, record.id)


def _creds(kubeconfig: str) -> ClusterCredentials:
    return parse_kubeconfig(kubeconfig, source="issued")


async def _status(creds: ClusterCredentials, action: Callable[[AsyncClient], Awaitable[Any]]) -> int:
    """The API server's answer to ``action`` done with ``creds``: 200, or its error status."""
    try:
        async with kube_client.open_client(creds) as client:
            await action(client)
    except ApiError as exc:
        return int(exc.status.code or 0)
    return 200


def _list_pods(namespace: str | None) -> Callable[[AsyncClient], Awaitable[Any]]:
    async def run(client: AsyncClient) -> list[Pod]:
        return [p async for p in client.list(Pod, namespace=namespace or "*")]

    return run


async def _delete_pod(client: AsyncClient) -> None:
    await client.delete(Pod, "anything", namespace="default")


async def _list_secrets(client: AsyncClient) -> list[Secret]:
    return [s async for s in client.list(Secret, namespace="default")]


async def _until(
    creds: ClusterCredentials, action: Callable[[AsyncClient], Awaitable[Any]], want: int
) -> int:
    """Poll until the API server answers ``want`` (aggregated roles are filled in asynchronously)."""

    async def probe() -> int:
        return await _status(creds, action)

    return await eventually(probe, lambda s: s == want, timeout=20, interval=0.2)


async def _managed(platform: Platform) -> set[str]:
    objects = await kube_rbac.read_rbac(
        platform.clusters.credentials(SHARED_CLUSTER), labels=rbac_plan.MANAGED_LABELS, include_roles=False
    )
    return {
        str(rbac_plan.ObjectRef.of(o))
        for o in [*objects.cluster_roles, *objects.cluster_role_bindings, *objects.role_bindings]
    }


# ----- the tests ------------------------------------------------------------------------------------


async def test_a_viewer_lists_pods_but_cannot_delete_and_gets_nothing_elsewhere(
    platform: Platform, shared_cluster: ClusterRecord, people: None
) -> None:
    with bound(platform, VERA, Role.VIEWER, Scope.of_cluster(SHARED_CLUSTER)):
        session = platform.identity.log_in(LoginAttempt(VERA, PASSWORD))
        principal = platform.identity.authenticate(session.token)
        issued = await platform.cluster_access.issue_kubeconfig(
            principal, SHARED_CLUSTER, ttl=timedelta(minutes=5)
        )

        assert issued.user == f"pilothouse:{VERA}"
        assert issued.groups == ("pilothouse:viewer",)
        cert = x509.load_pem_x509_certificate(_creds(issued.kubeconfig).client_cert_pem or b"")
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"pilothouse:{VERA}"
        assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
            "pilothouse:viewer"
        ]
        assert cert.not_valid_after_utc - datetime.now(UTC) <= timedelta(minutes=5)
        assert cert.not_valid_before_utc < datetime.now(UTC)
        assert "PRIVATE KEY" not in repr(issued)

        creds = _creds(issued.kubeconfig)
        assert await _until(creds, _list_pods(None), 200) == 200
        assert await _status(creds, _delete_pod) == 403
        assert await _status(creds, _list_secrets) == 403  # view never reads Secrets

        with pytest.raises(errors.InvalidInput, match="at most 60 minutes"):
            await platform.cluster_access.issue_kubeconfig(principal, SHARED_CLUSTER, ttl=timedelta(hours=2))
        with pytest.raises(errors.NotFound):
            await platform.cluster_access.issue_kubeconfig(principal, "ca-no-such-cluster")
        olga = platform.identity.principal_of_user(OLGA)
        with pytest.raises(errors.Forbidden, match="holds no role on cluster"):
            await platform.cluster_access.issue_kubeconfig(olga, SHARED_CLUSTER)
        with pytest.raises(errors.InvalidInput, match="not a user"):
            await platform.cluster_access.issue_kubeconfig(ADMIN, SHARED_CLUSTER)

        # Another cluster (a record imported from the same API server): no grant there, no credentials;
        # with a grant, still none, for Pilothouse does not hold an imported cluster's CA.
        other = "ca-elsewhere"
        await platform.clusters.import_cluster(
            requests.parse(
                requests.ImportCluster, name=other, kubeconfig=platform.clusters.kubeconfig(SHARED_CLUSTER)
            )
        )
        try:
            with pytest.raises(errors.Forbidden, match=f"holds no role on cluster '{other}'"):
                await platform.cluster_access.issue_kubeconfig(principal, other)
            with bound(platform, VERA, Role.VIEWER, Scope.of_cluster(other)):
                fresh = platform.identity.authenticate(session.token)
                with pytest.raises(errors.Conflict, match="need the cluster CA"):
                    await platform.cluster_access.issue_kubeconfig(fresh, other)
        finally:
            await platform.clusters.delete(other)


async def test_a_namespace_binding_reaches_only_its_namespace(
    platform: Platform, shared_cluster: ClusterRecord, people: None, namespace: str
) -> None:
    with bound(platform, NINA, Role.VIEWER, Scope.of_namespace(SHARED_CLUSTER, namespace)):
        issued = await platform.cluster_access.issue_kubeconfig(
            platform.identity.principal_of_user(NINA), SHARED_CLUSTER
        )
        assert issued.groups == (f"pilothouse:viewer:ns:{namespace}",)
        assert issued.not_after - datetime.now(UTC) <= timedelta(hours=1)
        creds = _creds(issued.kubeconfig)
        assert await _until(creds, _list_pods(namespace), 200) == 200
        assert await _status(creds, _list_pods("default")) == 403
        assert await _status(creds, _list_pods(None)) == 403


async def test_the_sync_keeps_a_fixed_set_and_drops_a_rolebinding_with_its_last_binding(
    platform: Platform, shared_cluster: ClusterRecord, people: None, namespace: str
) -> None:
    fixed = {f"ClusterRole {name}" for name in rbac_plan.CLUSTER_ROLES} | {
        f"ClusterRoleBinding pilothouse:{role.value}" for role in Role
    }
    rolebinding = f"RoleBinding {namespace}/pilothouse:viewer"
    await platform.rbac_sync.sync_cluster(SHARED_CLUSTER)
    assert await _managed(platform) == fixed
    assert SHARED_CLUSTER not in await platform.rbac_sync.sync_once()  # plan unchanged: not contacted

    with bound(platform, NINA, Role.VIEWER, Scope.of_namespace(SHARED_CLUSTER, namespace)):
        synced = await platform.rbac_sync.sync_once()  # the background job's pass: the plan changed
        assert synced[SHARED_CLUSTER] == RbacSyncResult(SHARED_CLUSTER, (rolebinding,), (), (), len(fixed))
        assert await _managed(platform) == fixed | {rolebinding}
        issued = await platform.cluster_access.issue_kubeconfig(
            platform.identity.principal_of_user(NINA), SHARED_CLUSTER
        )
        creds = _creds(issued.kubeconfig)
        assert await _until(creds, _list_pods(namespace), 200) == 200
        # More users with the same role in the same namespace: not one object more.
        with bound(platform, VERA, Role.VIEWER, Scope.of_namespace(SHARED_CLUSTER, namespace)):
            result = await platform.rbac_sync.sync_cluster(SHARED_CLUSTER)
            assert result.applied == ()
            assert result.unchanged == len(fixed) + 1
            assert await _managed(platform) == fixed | {rolebinding}

        # Someone deletes a managed object by hand: the next pass puts it back.
        await kube_rbac.delete_objects(
            platform.clusters.credentials(SHARED_CLUSTER), [("ClusterRoleBinding", "", "pilothouse:auditor")]
        )
        assert (await platform.rbac_sync.sync_cluster(SHARED_CLUSTER)).applied == (
            "ClusterRoleBinding pilothouse:auditor",
        )

    # The last namespace binding went: the RoleBinding goes, and with it the old certificate's access.
    result = await platform.rbac_sync.sync_cluster(SHARED_CLUSTER)
    assert result.deleted == (rolebinding,)
    assert await _managed(platform) == fixed
    assert await _status(creds, _list_pods(namespace)) == 403


async def test_who_can_answers_from_the_clusters_rbac_and_pilothouses_roles(
    platform: Platform, shared_cluster: ClusterRecord, people: None, namespace: str
) -> None:
    with (
        bound(platform, VERA, Role.VIEWER, Scope.of_cluster(SHARED_CLUSTER)),
        bound(platform, NINA, Role.VIEWER, Scope.of_namespace(SHARED_CLUSTER, namespace)),
    ):
        await platform.rbac_sync.sync_cluster(SHARED_CLUSTER)
        (answer,) = await platform.cluster_access.who_can(
            "list", "po", cluster=SHARED_CLUSTER, namespace=namespace
        )
        assert answer.resource == "pods"
        found = {(h.source, h.kind, h.name, h.namespace) for h in answer.holders}
        assert ("pilothouse", "user", VERA, None) in found
        assert ("pilothouse", "user", NINA, namespace) in found
        assert ("pilothouse", "Group", "pilothouse:viewer", None) in found
        assert ("cluster", "Group", "system:masters", None) in found
        assert not any(name == OLGA for _s, _k, name, _ns in found)

        (nodes,) = await platform.cluster_access.who_can("list", "nodes", cluster=SHARED_CLUSTER)
        assert not nodes.namespaced
        assert NINA not in {h.name for h in nodes.holders}  # a RoleBinding never reaches nodes
        assert VERA not in {h.name for h in nodes.holders}  # nor does view

        (deleting,) = await platform.cluster_access.who_can("delete", "pods", cluster=SHARED_CLUSTER)
        assert VERA not in {h.name for h in deleting.holders}

        fleet = await platform.cluster_access.who_can("get", "deployments")
        shared = next(a for a in fleet if a.cluster == SHARED_CLUSTER)
        assert shared.resource == "deployments.apps"
        assert VERA in {h.name for h in shared.holders}

        with pytest.raises(errors.InvalidInput, match="serves no resource"):
            await platform.cluster_access.who_can("get", "gizmos", cluster=SHARED_CLUSTER)


def _cli(*args: str, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PILOTHOUSE), *args],
        env={**os.environ, "PILOTHOUSE_TOKEN": token, "COLUMNS": "250", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_api_and_cli(
    platform: Platform, shared_cluster: ClusterRecord, people: None, namespace: str, tmp_path: Path
) -> None:
    admin_token, _ = platform.identity.issue_token(
        ADMIN, "ca-admin", [(Role.PLATFORM_ADMIN, Scope.platform())]
    )
    vera = platform.identity.log_in(LoginAttempt(VERA, PASSWORD)).token
    olga = platform.identity.log_in(LoginAttempt(OLGA, PASSWORD)).token
    try:
        with (
            bound(platform, VERA, Role.VIEWER, Scope.of_cluster(SHARED_CLUSTER)),
            serving(create_app(platform, reconcile=False)) as api,
        ):
            url = f"{api}/api/v1/clusters/{SHARED_CLUSTER}/kubeconfig"

            def call(method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
                return httpx.request(
                    method, path, headers={"Authorization": f"Bearer {token}"}, timeout=30, **kwargs
                )

            issued = await asyncio.to_thread(call, "POST", url, vera, json={"ttl_seconds": 600})
            assert issued.status_code == 200, issued.text
            body = issued.json()
            assert body["groups"] == ["pilothouse:viewer"]
            assert body["user"] == f"pilothouse:{VERA}"
            creds = _creds(body["kubeconfig"])
            assert await _until(creds, _list_pods(None), 200) == 200
            refused = await asyncio.to_thread(call, "POST", url, olga, json={})
            assert refused.status_code == 403
            assert refused.json()["code"] == "forbidden"
            too_long = await asyncio.to_thread(call, "POST", url, vera, json={"ttl_seconds": 7200})
            assert too_long.status_code in (400, 422)

            who = f"{api}/api/v1/access/who-can"
            query = {"verb": "list", "resource": "pods", "cluster": SHARED_CLUSTER}
            assert (await asyncio.to_thread(call, "GET", who, vera, params=query)).status_code == 403
            answered = await asyncio.to_thread(call, "GET", who, admin_token, params=query)
            assert answered.status_code == 200, answered.text
            (answer,) = answered.json()
            assert {"kind": "user", "name": VERA, "source": "pilothouse"}.items() <= next(
                s for s in answer["subjects"] if s["name"] == VERA
            ).items()

        with bound(platform, VERA, Role.VIEWER, Scope.of_cluster(SHARED_CLUSTER)):
            target = tmp_path / "vera.kubeconfig"
            who_can = ("access", "who-can", "list", "pods")
            # Independent commands, run side by side (each CLI start costs seconds).
            done, printed, too_long_cli, listed, table, denied = await asyncio.gather(
                *(
                    asyncio.to_thread(_cli, *args, token=token)
                    for args, token in [
                        (("kubeconfig", SHARED_CLUSTER, "--ttl", "5m", "--output", str(target)), vera),
                        (("kubeconfig", SHARED_CLUSTER), vera),
                        (("kubeconfig", SHARED_CLUSTER, "--ttl", "2h"), vera),
                        ((*who_can, "--cluster", SHARED_CLUSTER, "--json"), admin_token),
                        ((*who_can, "--namespace", namespace), admin_token),
                        ((*who_can, "--cluster", SHARED_CLUSTER), vera),
                    ]
                )
            )
            assert done.returncode == 0, done.stderr
            assert stat.S_IMODE(target.stat().st_mode) == 0o600
            assert "pilothouse:viewer" in done.stderr
            assert await _until(_creds(target.read_text()), _list_pods(None), 200) == 200
            assert "client-key-data" in printed.stdout
            assert too_long_cli.returncode == 1
            assert too_long_cli.stderr.startswith("error: credentials live at most 60 minutes")

            assert listed.returncode == 0, listed.stderr
            (answer,) = json.loads(listed.stdout)
            assert VERA in {s["name"] for s in answer["subjects"]}
            assert table.returncode == 0, table.stderr
            assert f"{SHARED_CLUSTER}: who can list pods in {namespace}" in table.stdout
            assert VERA in table.stdout
            assert "system:masters" in table.stdout
            assert denied.returncode == 1
            assert "roles:read" in denied.stderr
    finally:
        platform.identity.revoke_token("ca-admin")


async def test_a_removed_binding_gets_no_new_credentials_and_the_old_ones_expire(
    platform: Platform, shared_cluster: ClusterRecord, people: None
) -> None:
    with bound(platform, VERA, Role.VIEWER, Scope.of_cluster(SHARED_CLUSTER)) as binding:
        principal = platform.identity.principal_of_user(VERA)
        issued = await platform.cluster_access.issue_kubeconfig(
            principal, SHARED_CLUSTER, ttl=timedelta(seconds=20)
        )
        creds = _creds(issued.kubeconfig)
        assert await _until(creds, _list_pods(None), 200) == 200
        platform.identity.unbind(ADMIN, binding.id)

    with pytest.raises(errors.Forbidden):
        await platform.cluster_access.issue_kubeconfig(
            platform.identity.principal_of_user(VERA), SHARED_CLUSTER
        )
    if datetime.now(UTC) < issued.not_after - timedelta(seconds=2):
        # Until its NotAfter the certificate is still good: the lifetime is the revocation bound.
        assert await _status(creds, _list_pods(None)) == 200
    await asyncio.sleep(max(0.0, (issued.not_after - datetime.now(UTC)).total_seconds()) + 1.5)
    assert await _status(creds, _list_pods(None)) == 401
