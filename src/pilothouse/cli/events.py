"""``pilothouse events search``: Kubernetes Events of the fleet, filtered, newest first.

Reads the store: the events ``pilothouse up`` (or any API replica) persisted
from its watches, kept ``event_retention_days``. This process watches nothing,
so events newer than the server's last flush (``events_flush_interval_seconds``)
are not in the answer yet. ``fleet.events`` defines the matching and the order.
"""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import TypeAdapter
from rich.table import Table

from pilothouse.api.events import EventOut, search
from pilothouse.cli.access import authorized_for
from pilothouse.cli.output import cli_errors, console
from pilothouse.fleet import events
from pilothouse.identity.policy import Permission

EVENTS_JSON = TypeAdapter(list[EventOut])
app = typer.Typer(name="events", help="Kubernetes Events of the fleet.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Kubernetes Events of the fleet."""  # a group even with one command, so `search` stays a subcommand


@app.command("search")
def search_command(
    cluster: Annotated[str | None, typer.Option(help="Only this cluster (default: every cluster).")] = None,
    namespace: Annotated[str | None, typer.Option(help="Only this namespace.")] = None,
    kind: Annotated[str | None, typer.Option(help="Kind of the involved object, e.g. Deployment.")] = None,
    name: Annotated[str | None, typer.Option(help="Name of the involved object.")] = None,
    reason: Annotated[str | None, typer.Option(help="Reason, e.g. ScalingReplicaSet, BackOff.")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Normal or Warning.")] = None,
    since: Annotated[str | None, typer.Option(help="A duration back from now (10m, 2h) or ISO 8601.")] = None,
    until: Annotated[str | None, typer.Option(help="A duration back from now or ISO 8601.")] = None,
    text: Annotated[str | None, typer.Option(help="Case-insensitive text in the message.")] = None,
    limit: Annotated[int, typer.Option(min=0, max=events.MAX_LIMIT, help="At most this many.")] = (
        events.DEFAULT_LIMIT
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Search the fleet's stored events by cluster, namespace, object, reason, type, time and text."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_READ, cluster) as (platform, _principal):
        now = platform.now()
        query = events.EventQuery.from_text(
            since=since,
            until=until,
            now=now,
            cluster=cluster,
            namespace=namespace,
            kind=kind,
            name=name,
            reason=reason,
            type=type_,
            text=text,
            limit=limit,
        )
        if cluster is not None:
            platform.clusters.get(cluster)  # NotFound for an unknown cluster
        found = search(platform, query)
        if as_json:
            typer.echo(EVENTS_JSON.dump_json(found, indent=2).decode())
            return
        _print(found)


def _print(found: list[EventOut]) -> None:
    table = Table("LAST SEEN", "CLUSTER", "NAMESPACE", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE")
    for e in found:
        table.add_row(
            "-" if e.last_timestamp is None else e.last_timestamp.isoformat(timespec="seconds"),
            e.cluster,
            e.namespace,
            f"[yellow]{e.type}[/]" if e.type == "Warning" else e.type,
            e.reason,
            f"{e.involved_kind}/{e.involved_name}",
            str(e.count),
            e.message,
        )
    console.print(table)
    console.print(f"{len(found)} events", highlight=False)
