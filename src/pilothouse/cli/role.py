"""``pilothouse role …``: bind roles to users or teams at the platform, a cluster or a namespace.

``pilothouse role bind viewer --user alice --cluster prod --namespace web``.
Binding and unbinding need ``roles:bind`` at the binding's scope and every
permission of the role there (nobody hands out more than they hold);
listing needs ``roles:read`` at the scope listed.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from pilothouse import errors
from pilothouse.cli.access import authorized, authorized_anywhere
from pilothouse.cli.output import cli_errors, console
from pilothouse.identity.accounts import binding_scope, check_role, check_scope
from pilothouse.identity.policy import ROLE_PERMISSIONS, Permission, Role, SubjectKind

app = typer.Typer(name="role", help="Bind platform roles to users and teams.", no_args_is_help=True)

UserOption = Annotated[str | None, typer.Option("--user", help="The user to bind.")]
TeamOption = Annotated[str | None, typer.Option("--team", help="The team to bind.")]
ClusterOption = Annotated[
    str | None, typer.Option("--cluster", help="Only this cluster (default: platform-wide).")
]
NamespaceOption = Annotated[str | None, typer.Option("--namespace", help="Only this namespace of --cluster.")]


def _subject(user: str | None, team: str | None) -> tuple[SubjectKind, str]:
    if (user is None) == (team is None):
        raise errors.InvalidInput("name exactly one of --user and --team", hint="e.g. --user alice")
    return (SubjectKind.USER, user) if user is not None else (SubjectKind.TEAM, team or "")


@app.command("bind")
def bind(
    role: Annotated[str, typer.Argument(help=f"One of: {', '.join(r.value for r in Role)}.")],
    user: UserOption = None,
    team: TeamOption = None,
    cluster: ClusterOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Give a user or team a role (platform-wide, on a cluster, or in one namespace)."""
    with cli_errors(), authorized_anywhere(Permission.ROLES_BIND) as (platform, principal):
        kind, subject = _subject(user, team)
        scope = check_scope(cluster, namespace)
        record = platform.identity.bind(principal, kind, subject, check_role(role), scope)
        console.print(f"bound {record.role} to {record.subject_kind} [bold]{record.subject}[/] on {scope}")


@app.command("unbind")
def unbind(
    role: Annotated[str, typer.Argument(help="The role to remove.")],
    user: UserOption = None,
    team: TeamOption = None,
    cluster: ClusterOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Remove a binding (the access it gave ends with the next request)."""
    with cli_errors(), authorized_anywhere(Permission.ROLES_BIND) as (platform, principal):
        kind, subject = _subject(user, team)
        scope = check_scope(cluster, namespace)
        record = platform.identity.find_binding(kind, subject, check_role(role), scope)
        platform.identity.unbind(principal, record.id)
        console.print(f"removed {record.role} of {record.subject_kind} [bold]{record.subject}[/] on {scope}")


@app.command("list")
def list_(
    user: UserOption = None,
    team: TeamOption = None,
    cluster: ClusterOption = None,
    namespace: NamespaceOption = None,
    permissions: Annotated[
        bool, typer.Option("--permissions", help="Show what each role grants instead of the bindings.")
    ] = False,
) -> None:
    """List bindings (at or inside --cluster/--namespace), or the roles' permissions."""
    if permissions:
        table = Table("ROLE", "PERMISSIONS")
        for role in Role:
            table.add_row(role.value, ", ".join(sorted(p.value for p in ROLE_PERMISSIONS[role])))
        console.print(table)
        return
    with cli_errors():
        scope = check_scope(cluster, namespace)
        with authorized(Permission.ROLES_READ, scope) as (platform, _principal):
            table = Table("ROLE", "SUBJECT", "SCOPE", "BY", "CREATED")
            for b in platform.identity.list_bindings(user=user, team=team, within=scope):
                table.add_row(
                    b.role,
                    f"{b.subject_kind}:{b.subject}",
                    str(binding_scope(b)),
                    b.created_by,
                    b.created_at.isoformat(timespec="seconds"),
                )
            console.print(table)
