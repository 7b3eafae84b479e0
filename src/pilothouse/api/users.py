"""REST routes of users (``/api/v1/users``): create, list, disable, delete, reset passwords and MFA, sessions.

Every route is guarded by ``users:read`` or ``users:admin`` at the platform
scope. Passwords and TOTP secrets go in, never out: the only secret a
response carries is a new enrolment's otpauth URI (and its QR code), once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field

from pilothouse.api.auth import CurrentPrincipal, get_platform, guarded
from pilothouse.identity import passwords
from pilothouse.identity.accounts import Enrolment
from pilothouse.identity.policy import Permission
from pilothouse.platform import Platform
from pilothouse.store.identity import Removed, SessionRecord, UserRecord

router = APIRouter(prefix="/api/v1/users", tags=["identity"])
PlatformDep = Annotated[Platform, Depends(get_platform)]


class UserOut(BaseModel):
    name: str
    display_name: str
    email: str
    source: str
    has_password: bool
    mfa: str = Field(description="off, pending (enrolled, awaiting its first code) or on")
    teams: list[str]
    disabled: bool
    created_at: datetime
    password_changed_at: datetime | None

    @classmethod
    def of(cls, r: UserRecord) -> UserOut:
        return cls(
            name=r.name,
            display_name=r.display_name,
            email=r.email,
            source=r.source,
            has_password=r.has_password,
            mfa=r.mfa,
            teams=list(r.teams),
            disabled=r.disabled,
            created_at=r.created_at,
            password_changed_at=r.password_changed_at,
        )


class SessionOut(BaseModel):
    id: str
    user: str
    prefix: str
    method: str
    client: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, s: SessionRecord) -> SessionOut:
        return cls(
            id=s.id,
            user=s.user,
            prefix=s.prefix + "…",
            method=s.method,
            client=s.client,
            created_at=s.created_at,
            expires_at=s.expires_at,
            revoked_at=s.revoked_at,
        )


class EnrolmentOut(BaseModel):
    user: str
    otpauth_uri: str = Field(description="Shown once: scan it (or the QR code) into an authenticator app.")
    qr_svg: str
    next_step: str

    @classmethod
    def of(cls, e: Enrolment, next_step: str) -> EnrolmentOut:
        return cls(user=e.user, otpauth_uri=e.uri, qr_svg=e.qr_svg, next_step=next_step)


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    password: str | None = Field(
        default=None,
        min_length=passwords.MIN_LENGTH,
        max_length=passwords.MAX_LENGTH,
        description="None: the user signs in through SSO only.",
    )
    display_name: str = Field(default="", max_length=160)
    email: str = Field(default="", max_length=254)


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=passwords.MIN_LENGTH, max_length=passwords.MAX_LENGTH)


class SessionsEnded(BaseModel):
    sessions_ended: int


class RemovedOut(BaseModel):
    """A deleted user or team, and how much went with it."""

    name: str
    bindings_removed: int
    memberships_removed: int
    sessions_removed: int
    tokens_removed: int

    @classmethod
    def of(cls, r: Removed) -> RemovedOut:
        return cls(
            name=r.name,
            bindings_removed=r.bindings,
            memberships_removed=r.memberships,
            sessions_removed=r.sessions,
            tokens_removed=r.tokens,
        )


@router.get("", response_model=list[UserOut], **guarded(Permission.USERS_READ))
def list_users(platform: PlatformDep) -> list[UserOut]:
    return [UserOut.of(u) for u in platform.identity.list_users()]


@router.post(
    "", response_model=UserOut, status_code=status.HTTP_201_CREATED, **guarded(Permission.USERS_ADMIN)
)
def create_user(body: UserIn, platform: PlatformDep) -> UserOut:
    record = platform.identity.create_user(
        body.name, body.password, display_name=body.display_name, email=body.email
    )
    return UserOut.of(record)


@router.get("/{name}", response_model=UserOut, **guarded(Permission.USERS_READ))
def get_user(name: str, platform: PlatformDep) -> UserOut:
    return UserOut.of(platform.identity.get_user(name))


@router.delete("/{name}", response_model=RemovedOut, **guarded(Permission.USERS_ADMIN))
def delete_user(name: str, principal: CurrentPrincipal, platform: PlatformDep) -> RemovedOut:
    """Delete the user with their sessions, tokens, team memberships and role bindings (not yourself)."""
    return RemovedOut.of(platform.identity.delete_user(principal, name))


@router.post("/{name}/disable", response_model=UserOut, **guarded(Permission.USERS_ADMIN))
def disable_user(name: str, platform: PlatformDep) -> UserOut:
    """Disable the user: every session and every token of theirs stops working at once."""
    return UserOut.of(platform.identity.set_disabled(name, True))


@router.post("/{name}/enable", response_model=UserOut, **guarded(Permission.USERS_ADMIN))
def enable_user(name: str, platform: PlatformDep) -> UserOut:
    return UserOut.of(platform.identity.set_disabled(name, False))


@router.put("/{name}/password", response_model=SessionsEnded, **guarded(Permission.USERS_ADMIN))
def reset_password(name: str, body: PasswordIn, platform: PlatformDep) -> SessionsEnded:
    """Set the user's password; every session of theirs ends."""
    return SessionsEnded(sessions_ended=platform.identity.set_password(name, body.password))


@router.post(
    "/{name}/mfa",
    response_model=EnrolmentOut,
    status_code=status.HTTP_201_CREATED,
    **guarded(Permission.USERS_ADMIN),
)
def enroll_mfa(name: str, platform: PlatformDep) -> EnrolmentOut:
    """Start a TOTP enrolment for the user (e.g. before a team requires MFA); their first sign-in with a code confirms it."""
    enrolment = platform.identity.enroll_mfa(name)
    return EnrolmentOut.of(enrolment, "the user signs in with a code from this secret; that confirms it")


@router.delete("/{name}/mfa", status_code=status.HTTP_204_NO_CONTENT, **guarded(Permission.USERS_ADMIN))
def disable_mfa(name: str, platform: PlatformDep) -> Response:
    """Remove the user's second factor and recovery codes (a lost device)."""
    platform.identity.disable_mfa(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{name}/sessions", response_model=list[SessionOut], **guarded(Permission.USERS_READ))
def list_sessions(name: str, platform: PlatformDep, include_inactive: bool = False) -> list[SessionOut]:
    return [SessionOut.of(s) for s in platform.identity.sessions_of(name, include_inactive=include_inactive)]


@router.delete("/{name}/sessions", response_model=SessionsEnded, **guarded(Permission.USERS_ADMIN))
def revoke_sessions(name: str, platform: PlatformDep) -> SessionsEnded:
    """Sign the user out everywhere."""
    return SessionsEnded(sessions_ended=platform.identity.revoke_sessions(name))
