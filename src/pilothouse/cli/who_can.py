"""``pilothouse access who-can VERB RESOURCE``: who can do it, across the fleet.

Answers per cluster from the cluster's own RBAC, with Pilothouse's groups
expanded into the users and teams whose roles put them there
(``identity.cluster_access.who_can``). Needs ``roles:read`` at the scope
asked about (``--cluster``/``--namespace``; the platform without them), the
same check as ``GET /api/v1/access/who-can``. (``cli.access`` is the CLI's
caller identification, not this command group.)
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from pilothouse.cli.access import authorized
from pilothouse.cli.output import cli_errors, console, run
from pilothouse.identity.cluster_access import WhoCanAnswer, who_can_scope
from pilothouse.identity.policy import Permission

app = typer.Typer(name="access", help="Who can do what in the fleet's clusters.", no_args_is_help=True)


def answer_json(answer: WhoCanAnswer) -> dict[str, Any]:
    return {
        "cluster": answer.cluster,
        "resource": answer.resource,
        "namespaced": answer.namespaced,
        "error": answer.error,
        "subjects": [
            {
                "kind": h.kind,
                "name": h.name,
                "namespace": h.namespace,
                "via": h.via,
                "source": h.source,
                "only_names": list(h.only_names),
                "members": list(h.members),
            }
            for h in answer.holders
        ],
    }


@app.command("who-can")
def who_can(
    verb: Annotated[str, typer.Argument(help="A Kubernetes verb: get, list, create, delete, …")],
    resource: Annotated[str, typer.Argument(help="A resource: pods, deployments.apps, pods/log, nodes, …")],
    cluster: Annotated[str | None, typer.Option("--cluster", help="Only this cluster.")] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", help="Only in this namespace.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Who can VERB RESOURCE, per cluster: the cluster's own RBAC and Pilothouse's roles."""
    with cli_errors():
        scope = who_can_scope(cluster, namespace)
        with authorized(Permission.ROLES_READ, scope) as (platform, _principal):
            answers = run(
                platform.cluster_access.who_can(verb, resource, cluster=cluster, namespace=namespace)
            )
    if as_json:
        typer.echo(json.dumps([answer_json(a) for a in answers], indent=2))
        return
    if not answers:
        console.print("no running cluster to ask")
    for answer in answers:
        title = f"{answer.cluster}: who can {verb} {answer.resource}" + (
            f" in {namespace}" if namespace else ""
        )
        if answer.error:
            console.print(
                f"[bold]{answer.cluster}[/]: [red]not answered[/]: {escape(answer.error)}", highlight=False
            )
            continue
        table = Table("KIND", "SUBJECT", "WHERE", "FROM", "VIA", title=escape(title), title_justify="left")
        for h in answer.holders:
            name = h.name + (f" ({', '.join(h.members)})" if h.members else "")
            name += f" [only {', '.join(h.only_names)}]" if h.only_names else ""
            source = "[cyan]pilothouse[/]" if h.source == "pilothouse" else "cluster"
            table.add_row(escape(h.kind), escape(name), escape(h.where), source, escape(h.via))
        console.print(table)
