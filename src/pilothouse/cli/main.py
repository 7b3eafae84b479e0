"""The ``pilothouse`` command (Typer): one sub-app per command group."""

from __future__ import annotations

import typer

from pilothouse import __version__
from pilothouse.cli import (
    alerts,
    backup,
    binaries,
    capacity,
    certificates,
    cluster,
    events,
    fleet,
    logs,
    operations,
    rollout,
    token,
    up,
)
from pilothouse.cli import kubeconfig as kubeconfig_cli
from pilothouse.cli import login as login_cli
from pilothouse.cli import role as role_cli
from pilothouse.cli import team as team_cli
from pilothouse.cli import user as user_cli
from pilothouse.cli import who_can as who_can_cli

app = typer.Typer(
    name="pilothouse",
    help="Pilothouse: a self-hosted managed-Kubernetes control plane.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(cluster.app)
app.add_typer(binaries.app)
app.add_typer(token.app)
app.add_typer(user_cli.app)
app.add_typer(team_cli.app)
app.add_typer(role_cli.app)
app.add_typer(who_can_cli.app)
app.add_typer(fleet.app)
app.add_typer(fleet.sla_app)
app.add_typer(capacity.app)
app.add_typer(events.app)
app.add_typer(alerts.app)
app.add_typer(operations.upgrade_app)
app.add_typer(operations.app)
app.add_typer(rollout.app)
app.add_typer(certificates.app)
app.add_typer(backup.app)
app.add_typer(backup.dr_app)
app.command("up")(up.up)
app.command("logs")(logs.logs)
app.command("kubeconfig")(kubeconfig_cli.kubeconfig)
app.command("login")(login_cli.login)
app.command("logout")(login_cli.logout)


@app.command("version")
def version() -> None:
    """Print Pilothouse's version."""
    typer.echo(__version__)


def main() -> None:
    app()
