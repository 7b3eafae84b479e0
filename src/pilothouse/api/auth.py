"""Authentication and authorisation for every API route: ``guarded`` is the one mechanism.

Every route declares its access with ``**guarded(...)``:

- ``guarded(Permission.X)``: the caller must hold ``X`` at the route's
  *target scope* (``route_target``): the cluster named by the path — the
  ``{name}`` of ``/api/v1/clusters/{name}/…``, or a ``{cluster}`` path
  parameter — or by a ``cluster`` query parameter the route declares,
  narrowed by a ``namespace`` path or declared query parameter; the platform
  when none is given. An empty or malformed value widens the target (to the
  platform), never narrows it.
- ``guarded(Permission.X, scope=anywhere)``: the caller must hold ``X`` at
  some scope; the route itself filters what it returns or checks the scope
  named in its body (with ``Platform.identity``).
- ``guarded(Access.AUTHENTICATED)``: any signed-in caller (their own session,
  ``whoami``); ``guarded(Access.PUBLIC)``: no token (``/healthz``, sign-in).

The decision is ``Platform.identity.check`` → ``identity.policy.authorize``,
the same check the CLI makes. The access is documented in the OpenAPI
operation (``x-pilothouse-permission`` and ``x-pilothouse-scope``, or
``x-pilothouse-access``), and the role-by-route matrix test reads it.

``authenticate`` turns the bearer token — an API token (``ph_…``) or a session
(``phs_…``) — into a ``Principal``.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pilothouse import errors
from pilothouse.identity import policy
from pilothouse.identity.policy import Permission, Scope
from pilothouse.platform import Platform

bearer = HTTPBearer(
    auto_error=False, description="A Pilothouse API token (`ph_…`) or a session token from sign-in (`phs_…`)"
)

Principal = policy.Principal

PERMISSION_EXTENSION = "x-pilothouse-permission"
SCOPE_EXTENSION = "x-pilothouse-scope"
ACCESS_EXTENSION = "x-pilothouse-access"
CLUSTER_ROUTES = "/api/v1/clusters/{name}"

#: Works out a request's target scope; None: "anywhere" (the route filters by scope itself).
ScopeRule = Callable[[Request], Scope | None]


class Access(StrEnum):
    """Routes open without a permission."""

    PUBLIC = "public"  # no token at all
    AUTHENTICATED = "authenticated"  # any valid token; the route acts on the caller only


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise errors.Unauthenticated(
            "this endpoint needs a bearer token",
            hint="send 'Authorization: Bearer <token>'; the bootstrap token is printed by the first `pilothouse up`",
        )
    return credentials.credentials


def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    return get_platform(request).identity.authenticate(bearer_token(credentials))


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


def _declared_query(request: Request) -> set[str]:
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    return {field.alias for field in getattr(dependant, "query_params", ())}


def route_target(request: Request) -> Scope:
    """The scope a request acts on, from its path and declared query parameters (see the module doc)."""
    path = getattr(request.scope.get("route"), "path", "")
    params = request.path_params
    declared = _declared_query(request)
    cluster = params.get("cluster")
    if cluster is None and (path == CLUSTER_ROUTES or path.startswith(CLUSTER_ROUTES + "/")):
        cluster = params.get("name")
    if cluster is None and "cluster" in declared:
        cluster = request.query_params.get("cluster")
    namespace = params.get("namespace")
    if namespace is None and "namespace" in declared:
        namespace = request.query_params.get("namespace")
    try:
        return Scope.of(cluster or None, namespace or None)
    except ValueError:
        return Scope.platform()  # a namespace without its cluster: the widest target


def anywhere(_request: Request) -> None:
    """Scope rule of routes that filter by scope themselves: the permission held anywhere."""
    return


def guarded(access: Permission | Access, *, scope: ScopeRule = route_target) -> dict[str, Any]:
    """Route keyword arguments: enforce ``access`` and document it in the OpenAPI operation."""
    if access is Access.PUBLIC:
        return {"openapi_extra": {ACCESS_EXTENSION: access.value}}
    if access is Access.AUTHENTICATED:
        return {"dependencies": [Depends(authenticate)], "openapi_extra": {ACCESS_EXTENSION: access.value}}
    permission = Permission(access)

    def check(request: Request, principal: CurrentPrincipal) -> Principal:
        identity = get_platform(request).identity
        target = scope(request)
        if target is None:
            identity.check_anywhere(principal, permission)
        else:
            identity.check(principal, permission, target)
        return principal

    rule = "anywhere" if scope is anywhere else ("route" if scope is route_target else scope.__name__)
    return {
        "dependencies": [Depends(check)],
        "openapi_extra": {PERMISSION_EXTENSION: permission.value, SCOPE_EXTENSION: rule},
    }
