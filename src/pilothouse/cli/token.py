"""``pilothouse token …``: API tokens with roles at scopes, expiring, shown once, stored hashed.

``pilothouse token issue ci --role operator --cluster prod --ttl-hours 24``.
Issuing and revoking need ``tokens:admin``, listing ``tokens:read``. A token
issued ``--for`` a user never does more than that user can.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from pilothouse.cli.access import authorized, expiry_text
from pilothouse.cli.output import cli_errors, console
from pilothouse.identity.accounts import check_role, check_scope
from pilothouse.identity.policy import Permission, Scope

app = typer.Typer(name="token", help="Manage API tokens.", no_args_is_help=True)


def _scope_text(cluster: str, namespace: str) -> str:
    return str(Scope.of(cluster or None, namespace or None))


@app.command("issue")
def issue(
    name: Annotated[str, typer.Argument(help="A name to recognise the token by.")],
    role: Annotated[list[str], typer.Option("--role", help="Role(s) granted (repeatable).")] = ["viewer"],  # noqa: B006
    cluster: Annotated[str | None, typer.Option("--cluster", help="Only on this cluster.")] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", help="Only in this namespace of --cluster.")
    ] = None,
    owner: Annotated[str | None, typer.Option("--for", help="The user the token acts for.")] = None,
    ttl_hours: Annotated[
        float | None, typer.Option("--ttl-hours", min=0.001, help="Expire after this many hours.")
    ] = None,
    never_expires: Annotated[
        bool, typer.Option("--never-expires", help="No expiry (service tokens).")
    ] = False,
) -> None:
    """Issue a token and print it once (default lifetime: the token_default_ttl_days setting)."""
    with cli_errors(), authorized(Permission.TOKENS_ADMIN) as (platform, principal):
        scope = check_scope(cluster, namespace)
        grants = [(check_role(r), scope) for r in role]
        token, info = platform.identity.issue_token(
            principal,
            name,
            grants,
            ttl=timedelta(hours=ttl_hours) if ttl_hours else None,
            never_expires=never_expires,
            owner=owner,
        )
        console.print(
            f"token {info.name}: {', '.join(role)} on {scope}, expires {expiry_text(info.expires_at)}"
            " (shown once; store it safely):",
            style="bold",
            soft_wrap=True,
        )
        typer.echo(token)


app.command("create", hidden=True, help="Same as `issue` (older name).")(issue)


@app.command("list")
def list_(
    owner: Annotated[str | None, typer.Option("--for", help="Only this user's tokens.")] = None,
) -> None:
    """List tokens (never their values)."""
    with cli_errors(), authorized(Permission.TOKENS_READ) as (platform, _principal):
        table = Table("NAME", "PREFIX", "GRANTS", "FOR", "CREATED", "EXPIRES", "REVOKED")
        for info in platform.identity.list_tokens(owner=owner):
            table.add_row(
                info.name,
                info.prefix + "…",
                ", ".join(f"{g.role}@{_scope_text(g.cluster, g.namespace)}" for g in info.grants),
                info.owner or "",
                info.created_at.isoformat(timespec="seconds"),
                expiry_text(info.expires_at),
                info.revoked_at.isoformat(timespec="seconds") if info.revoked_at else "",
            )
        console.print(table)


@app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="Token name.")]) -> None:
    """Revoke a token at once."""
    with cli_errors(), authorized(Permission.TOKENS_ADMIN) as (platform, _principal):
        platform.identity.revoke_token(name)
        console.print(f"revoked token [bold]{name}[/]")
