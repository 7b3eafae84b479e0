"""``pilothouse alerts …``: list, acknowledge and silence alerts."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from pilothouse import errors
from pilothouse.cli.access import authorized_for
from pilothouse.cli.output import cli_errors, console
from pilothouse.identity.policy import Permission

app = typer.Typer(
    name="alerts", help="Alerts of the fleet: list, acknowledge, silence.", no_args_is_help=True
)
CLI_USER = "cli"


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``1d`` (combinations like ``1h30m`` too)."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise errors.InvalidInput(f"cannot read the duration {text!r}", hint="use e.g. 30m, 2h or 1d12h")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return timedelta(seconds=sum(float(n) * unit[u] for n, u in parts))


@app.command("list")
def list_(
    cluster: Annotated[str | None, typer.Option(help="Only this cluster.")] = None,
    include_resolved: Annotated[bool, typer.Option("--all", help="Include resolved alerts.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Pending and firing alerts, newest first."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_READ, cluster) as (platform, _principal):
        records = platform.alerts.current(cluster=cluster, include_resolved=include_resolved)
        if as_json:
            from pilothouse.api.alerts import AlertOut

            typer.echo(json.dumps([AlertOut.of(r).model_dump(mode="json") for r in records], indent=2))
            return
        table = Table("FINGERPRINT", "RULE", "CLUSTER", "STATUS", "SEVERITY", "SINCE", "ACK", "SUMMARY")
        for r in records:
            table.add_row(
                r.fingerprint[:12],
                r.rule,
                r.cluster,
                r.status + (" (silenced)" if r.silenced_by else ""),
                r.severity,
                r.started_at.isoformat(timespec="seconds"),
                r.acked_by or "",
                r.summary,
            )
        console.print(table)


@app.command("ack")
def ack(
    fingerprint: Annotated[str, typer.Argument(help="The alert's fingerprint (a unique prefix will do).")],
) -> None:
    """Acknowledge an alert: no repeated notices until it resolves."""
    with cli_errors(), authorized_for(Permission.ALERTS_MANAGE, None) as (platform, _principal):
        matches = [
            r for r in platform.alerts.current(include_resolved=True) if r.fingerprint.startswith(fingerprint)
        ]
        if len(matches) != 1:
            raise errors.NotFound(
                f"{len(matches)} alerts match {fingerprint!r}", hint="see `pilothouse alerts list --all`"
            )
        record = platform.alerts.acknowledge(matches[0].fingerprint, by=CLI_USER)
        console.print(f"acknowledged {record.rule} on {record.cluster}")


@app.command("silence")
def silence(
    matchers: Annotated[list[str], typer.Argument(help="Label matchers: cluster=prod alertname=~Node.*")],
    duration: Annotated[str, typer.Option(help="How long, e.g. 30m, 2h, 1d.")] = "2h",
    comment: Annotated[str, typer.Option(help="Why.")] = "",
) -> None:
    """Silence notifications of matching alerts (their state is still tracked)."""
    with cli_errors(), authorized_for(Permission.ALERTS_MANAGE, None) as (platform, _principal):
        record = platform.alerts.silence(
            matchers, duration=parse_duration(duration), by=CLI_USER, comment=comment
        )
        console.print(f"silence {record.id} until {record.ends_at.isoformat(timespec='seconds')}")


@app.command("silences")
def silences() -> None:
    """Active and future silences."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_READ, None) as (platform, _principal):
        table = Table("ID", "MATCHERS", "FROM", "UNTIL", "BY", "COMMENT")
        for s in platform.alerts.silences():
            table.add_row(
                s.id,
                " ".join(f"{m['name']}{m.get('op', '=')}{m['value']}" for m in s.matchers),
                s.starts_at.isoformat(timespec="seconds"),
                s.ends_at.isoformat(timespec="seconds"),
                s.created_by,
                s.comment,
            )
        console.print(table)


@app.command("unsilence")
def unsilence(silence_id: Annotated[str, typer.Argument(help="Silence id.")]) -> None:
    """Expire a silence now."""
    with cli_errors(), authorized_for(Permission.ALERTS_MANAGE, None) as (platform, _principal):
        platform.alerts.expire_silence(silence_id)
        console.print(f"expired silence {silence_id}")
