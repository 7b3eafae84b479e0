"""``pilothouse certificates …``: expiry of a local cluster's certificates, and rotation."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from pilothouse.cli.access import authorized_for
from pilothouse.cli.operations import CLI_USER, drive
from pilothouse.cli.output import cli_errors, console
from pilothouse.identity.policy import Permission

app = typer.Typer(
    name="certificates", help="Certificates of local clusters: expiry and rotation.", no_args_is_help=True
)
WARN_DAYS = 30


@app.command("list")
def list_(
    cluster: Annotated[str, typer.Argument(help="A local cluster.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every certificate of CLUSTER, soonest expiry first."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_READ, cluster) as (platform, _principal):
        found = platform.certificates.status(cluster)
        if as_json:
            typer.echo(
                json.dumps(
                    [
                        {
                            "path": c.path,
                            "not_before": c.not_before.isoformat(),
                            "not_after": c.not_after.isoformat(),
                            "is_ca": c.is_ca,
                            "days_left": round(c.days_left, 2),
                        }
                        for c in found
                    ],
                    indent=2,
                )
            )
            return
        table = Table("CERTIFICATE", "KIND", "NOT AFTER", "DAYS LEFT")
        for c in found:
            style = "red" if c.days_left <= 7 else "yellow" if c.days_left <= WARN_DAYS else ""
            days = f"[{style}]{c.days_left:.0f}[/]" if style else f"{c.days_left:.0f}"
            table.add_row(
                c.path, "CA" if c.is_ca else "leaf", c.not_after.isoformat(timespec="seconds"), days
            )
        console.print(table)


@app.command("rotate")
def rotate(
    cluster: Annotated[str, typer.Argument(help="A local cluster.")],
    detach: Annotated[
        bool, typer.Option("--detach", help="Only record the operation; `pilothouse up` runs it.")
    ] = False,
) -> None:
    """Re-issue every leaf certificate and restart processes one at a time (no downtime when HA)."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_WRITE, cluster) as (platform, _principal):
        record = platform.certificates.start_rotation(cluster, created_by=CLI_USER)
        console.print(f"operation {record.id}: rotate the certificates of {cluster}")
        if not detach:
            drive(platform, record.id)
