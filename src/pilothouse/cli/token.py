"""``pilothouse token …``: API tokens (shown once, stored hashed)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from pilothouse import errors
from pilothouse.cli.context import open_platform
from pilothouse.cli.output import cli_errors, console
from pilothouse.identity.policy import Role

app = typer.Typer(name="token", help="Manage API tokens.", no_args_is_help=True)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A name to recognise the token by.")],
    role: Annotated[list[str], typer.Option("--role", help="Role(s) granted (repeatable).")] = ["viewer"],  # noqa: B006
    ttl_hours: Annotated[
        float | None, typer.Option("--ttl-hours", help="Expire after this many hours.")
    ] = None,
) -> None:
    """Create a token and print it once."""
    with cli_errors(), open_platform() as platform:
        known = {r.value for r in Role}
        unknown = [r for r in role if r not in known]
        if unknown:
            raise errors.InvalidInput(
                f"unknown role(s): {', '.join(unknown)}", hint=f"roles: {', '.join(sorted(known))}"
            )
        expires = platform.now() + timedelta(hours=ttl_hours) if ttl_hours else None
        token, _info = platform.tokens.issue(name, tuple(role), expires_at=expires)
        console.print("token (shown once; store it safely):", style="bold")
        typer.echo(token)


@app.command("list")
def list_() -> None:
    """List tokens (never their values)."""
    with cli_errors(), open_platform() as platform:
        table = Table("NAME", "PREFIX", "ROLES", "CREATED", "EXPIRES", "REVOKED")
        for info in platform.tokens.list():
            table.add_row(
                info.name,
                info.prefix + "…",
                ",".join(info.roles),
                info.created_at.isoformat(timespec="seconds"),
                info.expires_at.isoformat(timespec="seconds") if info.expires_at else "",
                info.revoked_at.isoformat(timespec="seconds") if info.revoked_at else "",
            )
        console.print(table)


@app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="Token name.")]) -> None:
    """Revoke a token at once."""
    with cli_errors(), open_platform() as platform:
        platform.tokens.revoke(name, now=platform.now())
        console.print(f"revoked token [bold]{name}[/]")
