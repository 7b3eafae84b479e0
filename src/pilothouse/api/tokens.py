"""REST routes of API tokens (``/api/v1/tokens``): issue (shown once), list, revoke.

Listing needs ``tokens:read``, issuing and revoking ``tokens:admin``, at the
platform scope. A token holds roles at scopes; one issued for a user
(``owner``) never does more than that user can either. Nobody issues a
token holding more than they do.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field

from pilothouse.api.auth import CurrentPrincipal, get_platform, guarded
from pilothouse.identity.accounts import check_role, check_scope
from pilothouse.identity.policy import Permission
from pilothouse.platform import Platform
from pilothouse.store.tokens import TokenInfo

router = APIRouter(prefix="/api/v1/tokens", tags=["identity"])
PlatformDep = Annotated[Platform, Depends(get_platform)]


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str = Field(min_length=1, max_length=32)
    cluster: str | None = Field(default=None, min_length=1, max_length=63)
    namespace: str | None = Field(default=None, min_length=1, max_length=63)


class GrantOut(BaseModel):
    role: str
    cluster: str | None
    namespace: str | None


class TokenOut(BaseModel):
    name: str
    prefix: str
    roles: list[str]
    grants: list[GrantOut]
    owner: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, t: TokenInfo) -> TokenOut:
        return cls(
            name=t.name,
            prefix=t.prefix + "…",
            roles=list(t.roles),
            grants=[
                GrantOut(role=g.role, cluster=g.cluster or None, namespace=g.namespace or None)
                for g in t.grants
            ],
            owner=t.owner,
            created_at=t.created_at,
            expires_at=t.expires_at,
            revoked_at=t.revoked_at,
        )


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=96)
    grants: list[GrantIn] = Field(min_length=1, max_length=50)
    owner: str | None = Field(default=None, min_length=1, max_length=64, description="The user it acts for.")
    ttl_hours: float | None = Field(
        default=None, gt=0, le=24 * 366 * 5, description="None: the server's default lifetime."
    )
    never_expires: bool = False


class IssuedTokenOut(BaseModel):
    token: str = Field(description="The bearer token, shown once.")
    info: TokenOut


@router.get("", response_model=list[TokenOut], **guarded(Permission.TOKENS_READ))
def list_tokens(platform: PlatformDep, owner: str | None = None) -> list[TokenOut]:
    """Tokens (never their values)."""
    return [TokenOut.of(t) for t in platform.identity.list_tokens(owner=owner)]


@router.post(
    "", response_model=IssuedTokenOut, status_code=status.HTTP_201_CREATED, **guarded(Permission.TOKENS_ADMIN)
)
def issue_token(body: TokenIn, principal: CurrentPrincipal, platform: PlatformDep) -> IssuedTokenOut:
    grants = [(check_role(g.role), check_scope(g.cluster, g.namespace)) for g in body.grants]
    ttl = timedelta(hours=body.ttl_hours) if body.ttl_hours is not None else None
    token, info = platform.identity.issue_token(
        principal, body.name, grants, ttl=ttl, never_expires=body.never_expires, owner=body.owner
    )
    return IssuedTokenOut(token=token, info=TokenOut.of(info))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, **guarded(Permission.TOKENS_ADMIN))
def revoke_token(name: str, platform: PlatformDep) -> Response:
    """Revoke a token: it stops working at once."""
    platform.identity.revoke_token(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
