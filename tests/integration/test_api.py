"""The REST API over real HTTP (uvicorn on loopback) against the real shared cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from pilothouse.api.app import create_app
from pilothouse.api.auth import ACCESS_EXTENSION, PERMISSION_EXTENSION, Access
from pilothouse.identity.policy import Permission, Role, allows
from pilothouse.platform import Platform
from pilothouse.store.clusters import ClusterRecord
from tests.conftest import SHARED_CLUSTER, SHARED_NODES
from tests.integration.api_server import serving


@pytest.fixture(scope="module")
def api(platform: Platform) -> Iterator[str]:
    with serving(create_app(platform, reconcile=False)) as url:
        yield url


@pytest.fixture(scope="module")
def tokens(platform: Platform) -> dict[str, str]:
    issued = {}
    for role in Role:
        token, _ = platform.tokens.issue(f"api-test-{role.value}", (role.value,))
        issued[role.value] = token
    issued["none"] = platform.tokens.issue("api-test-no-role", ())[0]
    return issued


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _routes(platform: Platform) -> list[tuple[str, str, Permission | None]]:
    """Every (method, path, permission) the OpenAPI document lists; None: public or authenticated only."""
    schema = create_app(platform, reconcile=False).openapi()
    found = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            permission = operation.get(PERMISSION_EXTENSION)
            found.append(
                (
                    method.upper(),
                    path.replace("{name}", SHARED_CLUSTER),
                    Permission(permission) if permission else None,
                )
            )
    return found


def _access(platform: Platform) -> dict[tuple[str, str], str | None]:
    schema = create_app(platform, reconcile=False).openapi()
    return {
        (method.upper(), path): operation.get(ACCESS_EXTENSION)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }


def test_every_operation_names_its_permission(platform: Platform) -> None:
    access = _access(platform)
    unguarded = {(m, path) for m, path, permission in _routes(platform) if permission is None}
    assert all(access[route] in {a.value for a in Access} for route in unguarded), unguarded
    public = {path for (_m, path), value in access.items() if value == Access.PUBLIC.value}
    assert public == {
        "/healthz",
        "/api/v1/session",
        "/api/v1/session/sso/start",
        "/api/v1/session/sso/callback",
    }
    assert {"/openapi.json", "/api/v1/whoami"} <= {path for _m, path in unguarded}


def test_every_route_refuses_callers_without_a_token(platform: Platform, api: str) -> None:
    routes = _routes(platform)
    assert len(routes) >= 8
    public = {route for route, value in _access(platform).items() if value == Access.PUBLIC.value}
    for method, path, _permission in routes:
        if (method, path) in public:
            continue
        response = httpx.request(method, api + path, json={})
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.json()["code"] == "unauthenticated"
        assert response.headers["www-authenticate"] == "Bearer"


def test_role_by_route_matrix(
    platform: Platform, api: str, tokens: dict[str, str], shared_cluster: ClusterRecord
) -> None:
    """Each role is refused (403) exactly on the routes whose permission it lacks."""
    checked = 0
    for method, path, permission in _routes(platform):
        if permission is None:
            continue
        for role, token in tokens.items():
            if allows([role], permission):
                continue
            response = httpx.request(method, api + path, json={}, headers=_auth(token))
            assert response.status_code == 403, (role, method, path, response.status_code, response.text)
            assert response.json()["code"] == "forbidden"
            checked += 1
    assert checked > 10


def test_viewer_lists_clusters_but_cannot_read_credentials(
    api: str, tokens: dict[str, str], shared_cluster: ClusterRecord
) -> None:
    listed = httpx.get(api + "/api/v1/clusters", headers=_auth(tokens["viewer"]))
    assert listed.status_code == 200
    shared = next(c for c in listed.json() if c["name"] == SHARED_CLUSTER)
    assert shared["phase"] == "Running"
    assert shared["nodes"] == SHARED_NODES
    assert "BEGIN" not in listed.text
    assert "client-key" not in listed.text
    denied = httpx.get(api + f"/api/v1/clusters/{SHARED_CLUSTER}/kubeconfig", headers=_auth(tokens["viewer"]))
    assert denied.status_code == 403
    allowed = httpx.get(
        api + f"/api/v1/clusters/{SHARED_CLUSTER}/kubeconfig", headers=_auth(tokens["cluster-admin"])
    )
    assert allowed.status_code == 200
    assert "client-key-data" in allowed.text


def test_get_shows_live_process_states(
    api: str, tokens: dict[str, str], shared_cluster: ClusterRecord
) -> None:
    response = httpx.get(api + f"/api/v1/clusters/{SHARED_CLUSTER}", headers=_auth(tokens["viewer"]))
    assert response.status_code == 200
    processes = response.json()["processes"]
    assert processes["kube-apiserver-0"] is True
    assert processes["etcd-0"] is True


def test_revoked_and_expired_tokens_are_refused(platform: Platform, api: str) -> None:
    token, _ = platform.tokens.issue("api-test-revoked", ("viewer",))
    assert httpx.get(api + "/api/v1/clusters", headers=_auth(token)).status_code == 200
    platform.tokens.revoke("api-test-revoked", now=platform.now())
    response = httpx.get(api + "/api/v1/clusters", headers=_auth(token))
    assert response.status_code == 401
    assert "revoked" in response.json()["message"]
    expired, _ = platform.tokens.issue("api-test-expired", ("viewer",), expires_at=platform.now())
    response = httpx.get(api + "/api/v1/clusters", headers=_auth(expired))
    assert response.status_code == 401
    assert "expired" in response.json()["message"]
    response = httpx.get(api + "/api/v1/clusters", headers=_auth("ph_not-a-real-token"))
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"name": "Bad_Name"}, "name"),
        ({"name": "ok", "nodes": -1}, "nodes"),
        ({"name": "ok", "control_planes": 2}, "control_planes"),
        ({"name": "ok", "version": "1.99.0"}, "version"),
        ({"nodes": 3}, "name"),
        ({"name": "ok", "unexpected": True}, "unexpected"),
    ],
)
def test_bad_create_requests_get_a_clear_error_and_change_nothing(
    platform: Platform, api: str, tokens: dict[str, str], body: dict[str, object], fragment: str
) -> None:
    before = [c.name for c in platform.clusters.clusters()]
    response = httpx.post(api + "/api/v1/clusters", json=body, headers=_auth(tokens["platform-admin"]))
    assert response.status_code in (400, 422), response.text
    assert fragment in response.json()["message"]
    assert [c.name for c in platform.clusters.clusters()] == before


def test_duplicate_create_is_refused(api: str, tokens: dict[str, str], shared_cluster: ClusterRecord) -> None:
    response = httpx.post(
        api + "/api/v1/clusters", json={"name": SHARED_CLUSTER}, headers=_auth(tokens["platform-admin"])
    )
    assert response.status_code == 409
    assert response.json()["code"] == "already_exists"


def test_create_poll_and_delete_a_cluster_through_the_api(
    platform: Platform, api: str, tokens: dict[str, str]
) -> None:
    admin = _auth(tokens["platform-admin"])
    response = httpx.post(api + "/api/v1/clusters", json={"name": "via-api", "nodes": 2}, headers=admin)
    assert response.status_code == 202, response.text
    assert response.json()["phase"] == "Provisioning"
    seen_messages = set()
    deadline = time.monotonic() + 120
    while True:
        status = httpx.get(api + "/api/v1/clusters/via-api", headers=admin).json()
        seen_messages.add(status["message"])
        if status["phase"] != "Provisioning" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status["phase"] == "Running", status
    assert len(seen_messages) >= 2, "live status changed while the cluster was created"
    deleted = httpx.delete(api + "/api/v1/clusters/via-api", headers=admin)
    assert deleted.status_code == 204
    assert httpx.get(api + "/api/v1/clusters/via-api", headers=admin).status_code == 404
    assert not (platform.settings.clusters_dir / "via-api").exists()


def test_openapi_document_requires_no_secret_and_lists_routes(platform: Platform) -> None:
    schema = create_app(platform, reconcile=False).openapi()
    assert "/api/v1/clusters" in schema["paths"]
    assert "/openapi.json" in schema["paths"]
    assert "/api/v1/clusters/{name}/kubeconfig" in schema["paths"]
