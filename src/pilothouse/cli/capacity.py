"""``pilothouse capacity report``: requests and limits against allocatable, idle capacity and cost.

Opens a one-shot ``FleetInventory`` (as ``pilothouse cluster inventory`` does),
waits for each cluster's caches to sync, and renders ``fleet.capacity`` reports
as Rich tables or, with ``--json``, as the API's ``FleetCapacityOut``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pilothouse import errors
from pilothouse.api.capacity import CapacityOut, FleetCapacityOut, capacity_of, running_clusters
from pilothouse.cli.access import authorized_for
from pilothouse.cli.output import cli_errors, console, run
from pilothouse.fleet import capacity
from pilothouse.fleet.inventory import ClusterInventory, FleetInventory
from pilothouse.identity.policy import Permission
from pilothouse.platform import Platform

app = typer.Typer(name="capacity", help="Capacity and cost of clusters.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Capacity and cost of clusters."""  # a group even with one command, so `report` stays a subcommand


SYNC_TIMEOUT_SECONDS = 30.0
GIB = 1024**3
MIB = 1024**2


async def watch_once(platform: Platform, names: Sequence[str]) -> dict[str, ClusterInventory]:
    """Sync a one-shot inventory of ``names`` and return each cluster's cache (kept after the
    watches stop: the summaries are plain values). ``ClusterUnreachable`` if one does not sync."""
    async with FleetInventory(platform.clusters.credentials) as fleet:
        caches = {name: await fleet.ensure(name) for name in names}
        for name, cache in caches.items():
            try:
                await cache.wait_synced(SYNC_TIMEOUT_SECONDS)
            except TimeoutError:
                raise errors.ClusterUnreachable(
                    f"the inventory of {name!r} did not sync within {SYNC_TIMEOUT_SECONDS:.0f} s",
                    hint="check `pilothouse fleet status`",
                ) from None
        return caches


def read_price_table(path: Path | None) -> capacity.PriceTable:
    """The price table in ``path`` (YAML), or the defaults."""
    if path is None:
        return capacity.PriceTable()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.InvalidInput(f"cannot read the price table {str(path)!r}: {exc.strerror}") from None
    return capacity.parse_price_table(text, source=f"the price table {str(path)!r}")


def format_cpu(millicores: int) -> str:
    if millicores == 0:
        return "0"
    return f"{millicores}m" if millicores < 1000 else f"{millicores / 1000:g}"


def format_memory(size: int) -> str:
    if size >= GIB:
        return f"{size / GIB:.1f}Gi"
    if size >= MIB:
        return f"{size / MIB:.0f}Mi"
    return str(size)


def format_limit(value: int, render: Callable[[int], str]) -> str:
    """A summed limit; "-" when no container set one."""
    return "-" if value == 0 else render(value)


def format_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def format_money(value: float | Decimal, currency: str) -> str:
    return f"{value:.4f} {currency}"


@app.command("report")
def report(
    names: Annotated[list[str] | None, typer.Argument(help="Clusters (default: every running one).")] = None,
    by: Annotated[capacity.GroupBy, typer.Option("--by", help="Group by namespace or team label.")] = (
        capacity.GroupBy.NAMESPACE
    ),
    prices: Annotated[
        Path | None,
        typer.Option(
            "--prices",
            help="YAML price table: currency, cpu_hour, gib_hour, instance_types {TYPE: per node-hour}.",
        ),
    ] = None,
    threshold: Annotated[
        float, typer.Option(min=0.01, max=1.0, help="CapacityHigh above this share of allocatable.")
    ] = capacity.DEFAULT_THRESHOLD,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Requested vs allocatable CPU and memory, idle capacity and cost per hour, per cluster and group."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_READ, names) as (platform, _principal):
        table = read_price_table(prices)
        wanted = names or running_clusters(platform)
        for name in wanted:
            platform.clusters.get(name)
        caches = run(watch_once(platform, wanted))
        reports = [capacity_of(caches[n], prices=table, group_by=by, threshold=threshold) for n in wanted]
        out = FleetCapacityOut(
            currency=table.currency,
            cost_per_hour=float(capacity.total_over(reports)),
            clusters=[CapacityOut.of(r, synced=True) for r in reports],
        )
        if as_json:
            typer.echo(out.model_dump_json(indent=2))
            return
        _print(out)


def _print(out: FleetCapacityOut) -> None:
    clusters = Table(
        "CLUSTER", "NODES", "PODS", "CPU REQ/ALLOC", "MEM REQ/ALLOC", "IDLE CPU", "IDLE MEM", "COST/H", "IDLE/H",
        "CAPACITY",
        title="clusters",
    )  # fmt: skip
    groups = Table(
        "CLUSTER", "GROUP", "PODS", "CPU REQ", "MEM REQ", "CPU LIM", "MEM LIM", "CPU", "MEM", "COST/H"
    )
    for c in out.clusters:
        high = next(cond for cond in c.conditions if cond.type == capacity.CAPACITY_HIGH)
        clusters.add_row(
            c.cluster,
            str(c.nodes),
            str(c.pods),
            f"{format_cpu(c.requested.cpu_millicores)}/{format_cpu(c.allocatable.cpu_millicores)}"
            f" ({format_ratio(c.cpu_ratio)})",
            f"{format_memory(c.requested.memory_bytes)}/{format_memory(c.allocatable.memory_bytes)}"
            f" ({format_ratio(c.memory_ratio)})",
            format_cpu(c.idle.cpu_millicores),
            format_memory(c.idle.memory_bytes),
            format_money(c.cost_per_hour, c.currency),
            format_money(c.idle_cost_per_hour, c.currency),
            f"[red]{high.type}[/]" if high.status == "True" else "ok",
        )
        for g in c.groups:
            groups.add_row(
                c.cluster,
                g.name,
                str(g.pods),
                format_cpu(g.requested.cpu_millicores),
                format_memory(g.requested.memory_bytes),
                format_limit(g.limits.cpu_millicores, format_cpu),
                format_limit(g.limits.memory_bytes, format_memory),
                format_ratio(g.cpu_share),
                format_ratio(g.memory_share),
                format_money(g.cost_per_hour, c.currency),
            )
        if c.unscheduled_pods:
            console.print(
                f"{c.cluster}: {c.unscheduled_pods} unscheduled pods request"
                f" {format_cpu(c.unscheduled_requests.cpu_millicores)} CPU,"
                f" {format_memory(c.unscheduled_requests.memory_bytes)} (not counted above)",
                highlight=False,
            )
    console.print(clusters)
    groups.title = f"by {out.clusters[0].group_by}" if out.clusters else "groups"
    console.print(groups)
    console.print(f"fleet: {format_money(out.cost_per_hour, out.currency)} per hour", highlight=False)
