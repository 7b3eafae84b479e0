"""``pilothouse team …``: teams, their members, and whether they require MFA.

Reads need ``users:read``, changes ``teams:admin`` (checked by ``cli.access``).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from pilothouse.cli.access import authorized
from pilothouse.cli.output import YesOption, cli_errors, confirm_or_exit, console
from pilothouse.identity.policy import Permission
from pilothouse.store.identity import TeamRecord

app = typer.Typer(name="team", help="Manage teams and their members.", no_args_is_help=True)


def _describe(team: TeamRecord) -> str:
    mfa = "MFA required" if team.mfa_required else "MFA optional"
    return f"team [bold]{team.name}[/] ({mfa}): {', '.join(team.members) or 'no members'}"


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Team name (lower-case; letters, digits, . _ -).")],
    require_mfa: Annotated[
        bool, typer.Option("--require-mfa", help="Members must sign in with MFA.")
    ] = False,
) -> None:
    """Create a team."""
    with cli_errors(), authorized(Permission.TEAMS_ADMIN) as (platform, _principal):
        console.print("created " + _describe(platform.identity.create_team(name, mfa_required=require_mfa)))


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="Team name.")],
    yes: YesOption = False,
) -> None:
    """Delete a team: its role bindings stop reaching its members at once."""
    with cli_errors(), authorized(Permission.TEAMS_ADMIN) as (platform, principal):
        team = platform.identity.get_team(name)
        confirm_or_exit(f"delete team {team.name} and its role bindings?", yes=yes)
        removed = platform.identity.delete_team(principal, team.name)
        console.print(
            f"deleted team [bold]{removed.name}[/]: {removed.bindings} role binding(s), "
            f"{removed.memberships} membership(s)"
        )


@app.command("list")
def list_() -> None:
    """List teams and their members."""
    with cli_errors(), authorized(Permission.USERS_READ) as (platform, _principal):
        table = Table("NAME", "MFA REQUIRED", "MEMBERS")
        for team in platform.identity.list_teams():
            table.add_row(team.name, "yes" if team.mfa_required else "no", ",".join(team.members))
        console.print(table)


@app.command("add")
def add(
    team: Annotated[str, typer.Argument(help="Team name.")],
    user: Annotated[str, typer.Argument(help="User name.")],
) -> None:
    """Add a user to a team."""
    with cli_errors(), authorized(Permission.TEAMS_ADMIN) as (platform, _principal):
        console.print(_describe(platform.identity.add_member(team, user)))


@app.command("remove")
def remove(
    team: Annotated[str, typer.Argument(help="Team name.")],
    user: Annotated[str, typer.Argument(help="User name.")],
) -> None:
    """Remove a user from a team (the team's roles stop reaching them at once)."""
    with cli_errors(), authorized(Permission.TEAMS_ADMIN) as (platform, _principal):
        console.print(_describe(platform.identity.remove_member(team, user)))


@app.command("require-mfa")
def require_mfa(
    team: Annotated[str, typer.Argument(help="Team name.")],
    off: Annotated[bool, typer.Option("--off", help="Stop requiring MFA.")] = False,
) -> None:
    """Require members of a team to sign in with a second factor (or stop, with --off)."""
    with cli_errors(), authorized(Permission.TEAMS_ADMIN) as (platform, _principal):
        console.print(_describe(platform.identity.require_mfa(team, not off)))
