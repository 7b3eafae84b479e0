"""The role-by-route matrix: every route of the real API server, every role, every bad token.

Every route of ``create_app`` must declare its access (a permission, or
public / authenticated) — a route added without one fails here. Then each
route is called over real HTTP by callers holding each role at the platform,
at the route's cluster, at another cluster and at one namespace, by a user
signed in with a session, and by callers with no, a revoked, an expired or a
made-up token. A caller without the right role must be refused (401/403);
one with it must not be (any other status: the platform here is empty, so
most allowed calls end in 404 or 422).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from pilothouse.api.app import create_app
from pilothouse.api.auth import ACCESS_EXTENSION, PERMISSION_EXTENSION, SCOPE_EXTENSION, Access
from pilothouse.identity.accounts import LoginAttempt
from pilothouse.identity.policy import ROLE_PERMISSIONS, Permission, Role, Scope, SubjectKind
from pilothouse.platform import Platform
from pilothouse.settings import load_settings
from tests.integration.api_server import serving

CLUSTER = "prod"
NAMESPACE = "web"
PASSWORD = "matrix passphrase 1"
PATH_VALUES = {"name": CLUSTER, "cluster": CLUSTER, "namespace": NAMESPACE}


@dataclass(frozen=True)
class Endpoint:
    method: str
    template: str
    access: str  # a permission value, "public" or "authenticated"
    scope_rule: str  # "route" or "anywhere" (permission routes)
    declared_query: frozenset[str]

    @property
    def permission(self) -> Permission | None:
        return Permission(self.access) if self.access not in {a.value for a in Access} else None

    def url(self) -> str:
        path = self.template
        for name in _path_params(self.template):
            path = path.replace("{" + name + "}", PATH_VALUES.get(name, "no-such-" + name.replace("_", "-")))
        query = {
            k: v for k, v in (("cluster", CLUSTER), ("namespace", NAMESPACE)) if k in self.declared_query
        }
        return path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")

    def target(self) -> Scope:
        """The scope the call acts on, as the URL names it (the spec ``route_target`` implements)."""
        cluster = None
        if (
            self.template.startswith("/api/v1/clusters/{name}")
            or "{cluster}" in self.template
            or "cluster" in self.declared_query
        ):
            cluster = CLUSTER
        namespace = (
            NAMESPACE
            if cluster and ("{namespace}" in self.template or "namespace" in self.declared_query)
            else None
        )
        return Scope.of(cluster, namespace)


def _path_params(template: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in template.split("/") if part.startswith("{")]


def api_routes(app: FastAPI) -> list[tuple[str, APIRoute]]:
    """Every API route of ``app.routes`` with its full path, routers included (lazily, in this FastAPI)."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    if iterate is None:  # FastAPI before lazily included routers: app.routes is flat
        return [(r.path, r) for r in app.routes if isinstance(r, APIRoute)]
    return [(c.path, c.original_route) for c in iterate(app.routes) if isinstance(c.original_route, APIRoute)]


def unguarded_routes(app: FastAPI) -> list[str]:
    """Routes that declare no access at all (they would be open by accident)."""
    found = []
    for path, route in api_routes(app):
        extra = route.openapi_extra or {}
        if PERMISSION_EXTENSION not in extra and ACCESS_EXTENSION not in extra:
            found.append(f"{sorted(route.methods or ())} {path}")
    return found


def endpoints(app: FastAPI) -> list[Endpoint]:
    found = []
    for path, route in api_routes(app):
        extra = route.openapi_extra or {}
        access = extra.get(PERMISSION_EXTENSION) or extra[ACCESS_EXTENSION]
        declared = frozenset(f.alias for f in route.dependant.query_params)
        for method in sorted(set(route.methods or ()) - {"HEAD"}):
            found.append(Endpoint(method, path, access, extra.get(SCOPE_EXTENSION, ""), declared))
    signing_out = [e for e in found if (e.method, e.template) == ("DELETE", "/api/v1/session")]
    return [e for e in found if e not in signing_out] + signing_out  # signing out last: it ends the session


# ----- callers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    name: str
    token: str | None
    #: The grants: (role, scope) pairs; None: not a valid caller at all.
    grants: tuple[tuple[Role, Scope], ...] | None

    def allowed(self, endpoint: Endpoint) -> bool:
        if endpoint.access == Access.PUBLIC.value:
            return True
        if self.grants is None:
            return False
        permission = endpoint.permission
        if permission is None:
            return True  # authenticated only
        holding = [scope for role, scope in self.grants if permission in ROLE_PERMISSIONS[role]]
        if endpoint.scope_rule == "anywhere":
            return bool(holding)
        return any(scope.covers(endpoint.target()) for scope in holding)


@pytest.fixture(scope="module")
def matrix_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A platform of its own (no clusters: allowed calls cannot change anything real)."""
    home: Path = tmp_path_factory.mktemp("matrix")
    platform = Platform.open(load_settings(data_dir=home / "data", config_dir=home / "config"))
    yield platform
    platform.close()


@pytest.fixture(scope="module")
def callers(matrix_platform: Platform) -> list[Caller]:
    identity = matrix_platform.identity
    admin = identity.local_operator("test")
    found = []
    for role in Role:
        token, _ = identity.issue_token(admin, f"matrix-{role.value}", [(role, Scope.platform())])
        found.append(Caller(f"{role.value}@platform", token, ((role, Scope.platform()),)))
    for scope in (
        Scope.of_cluster(CLUSTER),
        Scope.of_cluster("other"),
        Scope.of_namespace(CLUSTER, NAMESPACE),
    ):
        token, _ = identity.issue_token(
            admin, f"matrix-admin-{scope}".replace("/", "-"), [(Role.PLATFORM_ADMIN, scope)]
        )
        found.append(Caller(f"platform-admin@{scope}", token, ((Role.PLATFORM_ADMIN, scope),)))
    legacy, _ = matrix_platform.tokens.issue("matrix-legacy-viewer", ("viewer",))
    found.append(Caller("viewer (bare roles)", legacy, ((Role.VIEWER, Scope.platform()),)))

    identity.create_user("mia", PASSWORD)
    identity.create_team("sre")
    identity.add_member("sre", "mia")
    identity.bind(admin, SubjectKind.TEAM, "sre", Role.OPERATOR, Scope.of_cluster(CLUSTER))
    session = identity.log_in(LoginAttempt("mia", PASSWORD)).token
    found.append(
        Caller(
            "operator@cluster/prod (session, via team)",
            session,
            ((Role.OPERATOR, Scope.of_cluster(CLUSTER)),),
        )
    )

    revoked, _ = identity.issue_token(admin, "matrix-revoked", [(Role.PLATFORM_ADMIN, Scope.platform())])
    identity.revoke_token("matrix-revoked")
    expired, _ = identity.issue_token(
        admin, "matrix-expired", [(Role.PLATFORM_ADMIN, Scope.platform())], ttl=timedelta(microseconds=1)
    )
    ended = identity.log_in(LoginAttempt("mia", PASSWORD)).token
    identity.end_session(ended)
    found += [
        Caller("no token", None, None),
        Caller("revoked platform-admin token", revoked, None),
        Caller("expired platform-admin token", expired, None),
        Caller("signed-out session", ended, None),
        Caller("made-up token", "ph_" + "A" * 43, None),
        Caller("made-up session", "phs_" + "A" * 43, None),
    ]
    return found


@pytest.fixture(scope="module")
def api(matrix_platform: Platform) -> Iterator[str]:
    with serving(create_app(matrix_platform, reconcile=False)) as url:
        yield url


# ----- the tests ------------------------------------------------------------------------------


def test_every_route_declares_its_access(matrix_platform: Platform) -> None:
    app = create_app(matrix_platform, reconcile=False)
    assert unguarded_routes(app) == []
    assert len(endpoints(app)) >= 40

    @app.get("/api/v1/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    assert unguarded_routes(app) == ["['GET'] /api/v1/forgotten"]  # the check notices a new open route


def test_role_by_route_matrix(matrix_platform: Platform, api: str, callers: list[Caller]) -> None:
    app = create_app(matrix_platform, reconcile=False)
    problems = []
    counts = {"refused": 0, "allowed": 0}
    with httpx.Client(base_url=api, timeout=30) as client:
        for endpoint in endpoints(app):
            for caller in callers:
                headers = {"Authorization": f"Bearer {caller.token}"} if caller.token else {}
                body: dict[str, object] | None = {} if endpoint.method in {"POST", "PUT", "PATCH"} else None
                with client.stream(endpoint.method, endpoint.url(), json=body, headers=headers) as response:
                    status = response.status_code
                    payload = response.read() if status in (401, 403) else b""
                expected = caller.allowed(endpoint)
                refused = status in (401, 403)
                if expected == refused:
                    problems.append(
                        f"{caller.name}: {endpoint.method} {endpoint.url()} → {status} {payload[:120]!r}"
                    )
                elif refused:
                    counts["refused"] += 1
                    wanted = 401 if caller.grants is None else 403
                    if status != wanted or b'"code"' not in payload:
                        problems.append(
                            f"{caller.name}: {endpoint.method} {endpoint.url()} → {status}, wanted {wanted}"
                        )
                else:
                    counts["allowed"] += 1
    assert problems == [], "\n".join(problems)
    assert counts["refused"] > 300
    assert counts["allowed"] > 100
