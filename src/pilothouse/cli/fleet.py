"""``pilothouse fleet status`` and ``pilothouse sla report``: the fleet's health at a glance."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer
from rich.table import Table

from pilothouse.cli.access import authorized_for
from pilothouse.cli.output import cli_errors, console, run
from pilothouse.identity.policy import Permission

app = typer.Typer(name="fleet", help="Health of every cluster.", no_args_is_help=True)
sla_app = typer.Typer(name="sla", help="Availability against the SLO.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@dataclasses.dataclass(frozen=True)
class StatusRow:
    cluster: str
    up: bool
    endpoints_ok: int
    endpoints: int
    failing: list[str]
    latency_ms: float | None
    availability_24h: float | None
    error_budget_remaining: float


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.3f}%"


@app.command("status")
def status(as_json: JsonOption = False) -> None:
    """Probe every cluster now: API endpoints, etcd members, 24 h availability."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_READ, None) as (platform, _principal):
        results = run(platform.health.probe_once())
        rows = []
        for result in results:
            report = platform.health.report(result.cluster)
            rows.append(
                StatusRow(
                    cluster=result.cluster,
                    up=result.up,
                    endpoints_ok=sum(e.ok for e in result.endpoints),
                    endpoints=len(result.endpoints),
                    failing=list(result.failing),
                    latency_ms=result.client_latency_ms,
                    availability_24h=report.window("24h").availability,
                    error_budget_remaining=report.budget.remaining_fraction,
                )
            )
        if as_json:
            typer.echo(json.dumps([dataclasses.asdict(row) for row in rows], indent=2))
            return
        table = Table("CLUSTER", "UP", "ENDPOINTS", "FAILING", "LATENCY", "24H", "BUDGET LEFT")
        for row in rows:
            table.add_row(
                row.cluster,
                "yes" if row.up else "[red]no[/]",
                f"{row.endpoints_ok}/{row.endpoints}",
                ", ".join(row.failing) or "-",
                "-" if row.latency_ms is None else f"{row.latency_ms:.0f} ms",
                _percent(row.availability_24h),
                _percent(row.error_budget_remaining),
            )
        console.print(table)


@sla_app.command("report")
def report(
    names: Annotated[list[str] | None, typer.Argument(help="Clusters (default: all).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Availability over 1 h, 24 h and 30 d, error budget and burn rates, from the recorded probes."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_READ, names) as (platform, _principal):
        wanted = names or [r.name for r in platform.clusters.clusters()]
        reports = [platform.health.report(name) for name in wanted]
        if as_json:
            from pilothouse.api.health import SLAOut

            typer.echo(json.dumps([SLAOut.of(r).model_dump(mode="json") for r in reports], indent=2))
            return
        table = Table("CLUSTER", "SLO", "1H", "24H", "30D", "BUDGET LEFT", "BURN 1H", "ALERTS")
        for r in reports:
            burn = {b.window: b.rate for b in r.burn_rates}.get("1h")
            table.add_row(
                r.cluster,
                _percent(r.slo),
                _percent(r.window("1h").availability),
                _percent(r.window("24h").availability),
                _percent(r.window("30d").availability),
                _percent(r.budget.remaining_fraction),
                "-" if burn is None else f"{burn:.1f}x",
                ", ".join(a.rule.name for a in r.firing) or "-",
            )
        console.print(table)
