"""REST routes of signing in and out and of the caller's own account (``/api/v1/session``).

``POST /api/v1/session`` is the one public route that takes credentials: a
user name, a password and, when the account needs one, a TOTP code or a
recovery code. It is throttled per user and per client address
(``identity.throttle``): 429 while locked out. Wrong credentials all get the
same 401 answer; an account that needs a second factor gets 401 with the code
``mfa_required``. The session token in the answer is shown once.

The other routes act on the caller only (``Access.AUTHENTICATED``): who am I
(``GET``), sign out (``DELETE``), change my password, enrol or remove my
second factor.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field

from pilothouse.api.auth import Access, CurrentPrincipal, bearer, bearer_token, get_platform, guarded
from pilothouse.api.users import EnrolmentOut, SessionOut, UserOut
from pilothouse.identity import passwords
from pilothouse.identity.accounts import LoginAttempt
from pilothouse.identity.policy import Grant
from pilothouse.platform import Platform
from pilothouse.store.identity import SESSION_PREFIX

router = APIRouter(prefix="/api/v1/session", tags=["identity"])
PlatformDep = Annotated[Platform, Depends(get_platform)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=passwords.MAX_LENGTH)
    code: str | None = Field(default=None, max_length=16, description="The current TOTP code.")
    recovery_code: str | None = Field(default=None, max_length=64, description="A single-use recovery code.")


class LoginOut(BaseModel):
    token: str = Field(description="The session's bearer token, shown once.")
    session: SessionOut
    user: UserOut
    recovery_codes: list[str] = Field(
        default_factory=list,
        description="Set when this sign-in confirmed a pending MFA enrolment (shown once).",
    )


class GrantOut(BaseModel):
    role: str
    scope: str
    via: str

    @classmethod
    def of(cls, g: Grant) -> GrantOut:
        return cls(role=g.role.value, scope=str(g.scope), via=g.via)


class MeOut(BaseModel):
    name: str
    user: str | None
    teams: list[str]
    via: str
    grants: list[GrantOut]
    restricted_to: list[GrantOut] | None = Field(
        description="The grants of the token used, when it narrows the user's."
    )
    mfa: str | None
    sessions: list[SessionOut]


class PasswordChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(min_length=1, max_length=passwords.MAX_LENGTH)
    new_password: str = Field(min_length=passwords.MIN_LENGTH, max_length=passwords.MAX_LENGTH)


class EnrolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=1, max_length=passwords.MAX_LENGTH, description="Proves it is you.")


class CodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=16)


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str] = Field(description="Single-use codes for a lost device, shown once.")


@router.post("", response_model=LoginOut, status_code=status.HTTP_201_CREATED, **guarded(Access.PUBLIC))
def log_in(body: LoginIn, request: Request, platform: PlatformDep) -> LoginOut:
    """Sign in with a password (and a TOTP or recovery code when the account needs one)."""
    client = request.client.host if request.client else ""
    issued = platform.identity.log_in(
        LoginAttempt(body.username, body.password, body.code, body.recovery_code, client=client)
    )
    return LoginOut(
        token=issued.token,
        session=SessionOut.of(issued.session),
        user=UserOut.of(issued.user),
        recovery_codes=list(issued.recovery_codes),
    )


@router.get("", response_model=MeOut, **guarded(Access.AUTHENTICATED))
def who_am_i(principal: CurrentPrincipal, platform: PlatformDep) -> MeOut:
    """The caller: user, teams, every grant (and where it comes from), sessions."""
    mfa, sessions = None, []
    if principal.user is not None:
        mfa = platform.identity.get_user(principal.user).mfa
        sessions = [SessionOut.of(s) for s in platform.identity.sessions_of(principal.user)]
    return MeOut(
        name=principal.name,
        user=principal.user,
        teams=sorted(principal.teams),
        via=principal.via,
        grants=[GrantOut.of(g) for g in principal.grants],
        restricted_to=None
        if principal.restriction is None
        else [GrantOut.of(g) for g in principal.restriction],
        mfa=mfa,
        sessions=sessions,
    )


@router.delete("", status_code=status.HTTP_204_NO_CONTENT, **guarded(Access.AUTHENTICATED))
def log_out(credentials: Credentials, platform: PlatformDep) -> Response:
    """Sign this session out (its token stops working at once); 400 for an API token."""
    platform.identity.end_session(bearer_token(credentials))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT, **guarded(Access.AUTHENTICATED))
def change_password(
    body: PasswordChangeIn, principal: CurrentPrincipal, credentials: Credentials, platform: PlatformDep
) -> Response:
    """Change my password; my other sessions end."""
    token = bearer_token(credentials)
    keep = platform.identity.session_of(token).id if token.startswith(SESSION_PREFIX) else None
    platform.identity.change_own_password(
        principal, body.current_password, body.new_password, keep_session=keep
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/mfa", response_model=EnrolmentOut, status_code=status.HTTP_201_CREATED, **guarded(Access.AUTHENTICATED)
)
def enroll_my_mfa(body: EnrolIn, principal: CurrentPrincipal, platform: PlatformDep) -> EnrolmentOut:
    """Start enrolling a TOTP second factor; confirm it with ``POST /api/v1/session/mfa/confirm``."""
    platform.identity.verify_own_password(principal, body.password)
    enrolment = platform.identity.enroll_mfa(platform.identity.user_of(principal))
    return EnrolmentOut.of(enrolment, "POST /api/v1/session/mfa/confirm with the current code")


@router.post("/mfa/confirm", response_model=RecoveryCodesOut, **guarded(Access.AUTHENTICATED))
def confirm_my_mfa(body: CodeIn, principal: CurrentPrincipal, platform: PlatformDep) -> RecoveryCodesOut:
    """Activate my pending second factor with its current code; returns recovery codes, once."""
    codes = platform.identity.confirm_mfa(platform.identity.user_of(principal), body.code)
    return RecoveryCodesOut(recovery_codes=list(codes))


@router.post("/mfa/disable", status_code=status.HTTP_204_NO_CONTENT, **guarded(Access.AUTHENTICATED))
def disable_my_mfa(body: CodeIn, principal: CurrentPrincipal, platform: PlatformDep) -> Response:
    """Remove my second factor, proven with a current code (refused if a team of mine requires MFA)."""
    platform.identity.disable_own_mfa(principal, body.code)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
