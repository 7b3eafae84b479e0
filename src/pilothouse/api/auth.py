"""Authentication and authorisation for every API route.

``authenticate`` turns the bearer token into a ``Principal``;
``require(permission)`` is the one dependency routes declare, and asks
``identity.policy.allows``. Adding users, teams or scoped bindings later
changes these two functions, not the routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pilothouse import errors
from pilothouse.identity.policy import Permission, allows
from pilothouse.platform import Platform

bearer = HTTPBearer(auto_error=False, description="A Pilothouse API token (`ph_…`)")


@dataclass(frozen=True)
class Principal:
    name: str
    roles: tuple[str, ...]


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise errors.Unauthenticated(
            "this endpoint needs a bearer token",
            hint="send 'Authorization: Bearer <token>'; the bootstrap token is printed by the first `pilothouse up`",
        )
    platform = get_platform(request)
    info = platform.tokens.authenticate(credentials.credentials, now=platform.now())
    return Principal(name=f"token:{info.name}", roles=info.roles)


def require(permission: Permission):  # type: ignore[no-untyped-def]  # FastAPI dependency factory
    def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not allows(principal.roles, permission):
            raise errors.Forbidden(
                f"{principal.name} lacks the permission {permission.value}",
                hint="ask a platform admin for a role that grants it",
            )
        return principal

    return Depends(check)


PERMISSION_EXTENSION = "x-pilothouse-permission"


def guarded(permission: Permission) -> dict[str, Any]:
    """Route keyword arguments: require ``permission`` and document it in the OpenAPI operation."""
    return {"dependencies": [require(permission)], "openapi_extra": {PERMISSION_EXTENSION: permission.value}}
