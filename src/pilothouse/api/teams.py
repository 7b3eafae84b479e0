"""REST routes of teams (``/api/v1/teams``): create, list, delete, members, MFA requirement.

Reads need ``users:read``, changes ``teams:admin``, at the platform scope.
A team with ``mfa_required`` keeps its members from signing in without a
second factor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field

from pilothouse.api.auth import CurrentPrincipal, get_platform, guarded
from pilothouse.api.users import RemovedOut
from pilothouse.identity.policy import Permission
from pilothouse.platform import Platform
from pilothouse.store.identity import TeamRecord

router = APIRouter(prefix="/api/v1/teams", tags=["identity"])
PlatformDep = Annotated[Platform, Depends(get_platform)]


class TeamOut(BaseModel):
    name: str
    mfa_required: bool
    members: list[str]
    created_at: datetime

    @classmethod
    def of(cls, t: TeamRecord) -> TeamOut:
        return cls(name=t.name, mfa_required=t.mfa_required, members=list(t.members), created_at=t.created_at)


class TeamIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    mfa_required: bool = False


class MfaRequirementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    required: bool


@router.get("", response_model=list[TeamOut], **guarded(Permission.USERS_READ))
def list_teams(platform: PlatformDep) -> list[TeamOut]:
    return [TeamOut.of(t) for t in platform.identity.list_teams()]


@router.post(
    "", response_model=TeamOut, status_code=status.HTTP_201_CREATED, **guarded(Permission.TEAMS_ADMIN)
)
def create_team(body: TeamIn, platform: PlatformDep) -> TeamOut:
    return TeamOut.of(platform.identity.create_team(body.name, mfa_required=body.mfa_required))


@router.get("/{name}", response_model=TeamOut, **guarded(Permission.USERS_READ))
def get_team(name: str, platform: PlatformDep) -> TeamOut:
    return TeamOut.of(platform.identity.get_team(name))


@router.delete("/{name}", response_model=RemovedOut, **guarded(Permission.TEAMS_ADMIN))
def delete_team(name: str, principal: CurrentPrincipal, platform: PlatformDep) -> RemovedOut:
    """Delete the team: its role bindings stop reaching its members at once."""
    return RemovedOut.of(platform.identity.delete_team(principal, name))


@router.put("/{name}/members/{user}", response_model=TeamOut, **guarded(Permission.TEAMS_ADMIN))
def add_member(name: str, user: str, platform: PlatformDep) -> TeamOut:
    """Add a user to the team (idempotent)."""
    return TeamOut.of(platform.identity.add_member(name, user))


@router.delete("/{name}/members/{user}", response_model=TeamOut, **guarded(Permission.TEAMS_ADMIN))
def remove_member(name: str, user: str, platform: PlatformDep) -> TeamOut:
    """Remove a user from the team: the team's roles stop reaching them at once."""
    return TeamOut.of(platform.identity.remove_member(name, user))


@router.put("/{name}/mfa", response_model=TeamOut, **guarded(Permission.TEAMS_ADMIN))
def require_mfa(name: str, body: MfaRequirementIn, platform: PlatformDep) -> TeamOut:
    """Require (or stop requiring) a second factor for the team's members."""
    return TeamOut.of(platform.identity.require_mfa(name, body.required))
