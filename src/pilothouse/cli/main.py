"""The ``pilothouse`` command (Typer): one sub-app per command group."""

from __future__ import annotations

import typer

from pilothouse import __version__
from pilothouse.cli import (
    alerts,
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

app = typer.Typer(
    name="pilothouse",
    help="Pilothouse: a self-hosted managed-Kubernetes control plane.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(cluster.app)
app.add_typer(binaries.app)
app.add_typer(token.app)
app.add_typer(fleet.app)
app.add_typer(fleet.sla_app)
app.add_typer(capacity.app)
app.add_typer(events.app)
app.add_typer(alerts.app)
app.add_typer(operations.upgrade_app)
app.add_typer(operations.app)
app.add_typer(rollout.app)
app.add_typer(certificates.app)
app.command("up")(up.up)
app.command("logs")(logs.logs)


@app.command("version")
def version() -> None:
    """Print Pilothouse's version."""
    typer.echo(__version__)


def main() -> None:
    app()
