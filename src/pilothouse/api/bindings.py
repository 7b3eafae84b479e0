"""REST routes of role bindings (``/api/v1/bindings``): who holds which role where.

``GET`` needs ``roles:read`` at the scope asked for (``?cluster=`` and
``?namespace=`` narrow it; none: the platform) and lists the bindings at or
inside it. ``POST`` and ``DELETE`` need ``roles:bind`` *at the binding's own
scope* and every permission of the role there (``identity.policy.can_grant``):
a cluster admin of ``prod`` can give ``viewer`` on ``prod`` but nothing on
``staging`` and nothing platform-wide. The route gate checks ``roles:bind``
anywhere; the service checks the scope in the body.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pilothouse import errors
from pilothouse.api.auth import CurrentPrincipal, anywhere, get_platform, guarded
from pilothouse.identity.accounts import binding_scope, check_role, check_scope
from pilothouse.identity.policy import Permission, Scope, SubjectKind
from pilothouse.platform import Platform
from pilothouse.store.identity import BindingRecord

router = APIRouter(prefix="/api/v1/bindings", tags=["identity"])
PlatformDep = Annotated[Platform, Depends(get_platform)]


class BindingOut(BaseModel):
    id: str
    subject_kind: str
    subject: str
    role: str
    scope: str = Field(description="platform, cluster/NAME or namespace/CLUSTER/NS")
    cluster: str | None
    namespace: str | None
    created_by: str
    created_at: datetime

    @classmethod
    def of(cls, b: BindingRecord) -> BindingOut:
        return cls(
            id=b.id,
            subject_kind=b.subject_kind,
            subject=b.subject,
            role=b.role,
            scope=str(binding_scope(b)),
            cluster=b.cluster or None,
            namespace=b.namespace or None,
            created_by=b.created_by,
            created_at=b.created_at,
        )


class BindingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str = Field(min_length=1, max_length=32)
    user: str | None = Field(default=None, min_length=1, max_length=64)
    team: str | None = Field(default=None, min_length=1, max_length=64)
    cluster: str | None = Field(default=None, min_length=1, max_length=63, description="None: the platform.")
    namespace: str | None = Field(default=None, min_length=1, max_length=63, description="Needs a cluster.")

    @model_validator(mode="after")
    def _one_subject(self) -> BindingIn:
        if (self.user is None) == (self.team is None):
            raise ValueError("name exactly one of user and team")
        return self


@router.get("", response_model=list[BindingOut], **guarded(Permission.ROLES_READ))
def list_bindings(
    platform: PlatformDep,
    cluster: str | None = None,
    namespace: str | None = None,
    user: str | None = None,
    team: str | None = None,
) -> list[BindingOut]:
    """Bindings at or inside the scope asked for (of one user or team)."""
    try:
        within = Scope.of(cluster or None, namespace or None)
    except ValueError:
        raise errors.InvalidInput("a namespace needs its cluster", hint="add ?cluster=NAME") from None
    found = platform.identity.list_bindings(user=user, team=team, within=within)
    return [BindingOut.of(b) for b in found]


@router.post(
    "",
    response_model=BindingOut,
    status_code=status.HTTP_201_CREATED,
    **guarded(Permission.ROLES_BIND, scope=anywhere),
)
def create_binding(body: BindingIn, principal: CurrentPrincipal, platform: PlatformDep) -> BindingOut:
    """Give a user or team a role at the platform, a cluster or a namespace."""
    role = check_role(body.role)
    scope = check_scope(body.cluster, body.namespace)
    kind, subject = (SubjectKind.USER, body.user) if body.user is not None else (SubjectKind.TEAM, body.team)
    assert subject is not None
    return BindingOut.of(platform.identity.bind(principal, kind, subject, role, scope))


@router.delete(
    "/{binding_id}", status_code=status.HTTP_204_NO_CONTENT, **guarded(Permission.ROLES_BIND, scope=anywhere)
)
def delete_binding(binding_id: str, principal: CurrentPrincipal, platform: PlatformDep) -> Response:
    """Remove a binding: the access it gave ends with the next request."""
    platform.identity.unbind(principal, binding_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
