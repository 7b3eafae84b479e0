"""``pilothouse rollout …``: surge-replace a cluster's nodes with nodes of a new version.

``rollout plan`` prints the batches, blockers and warnings (or JSON);
``rollout start`` records the durable operation and drives it here with Rich
progress bars (batches, old nodes replaced, pods moved off the current
batch); it exits 1 when the rollout fails and 2 when it pauses (a budget or a
health gate blocked it). If this process dies, the operation stays in the
store: ``pilothouse up`` or ``pilothouse operations resume ID`` finishes it,
and ``operations pause|abort|show`` apply as to any operation.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from pilothouse.cli.access import authorized_for
from pilothouse.cli.alerts import parse_duration
from pilothouse.cli.operations import CLI_USER
from pilothouse.cli.output import cli_errors, console, progress_bars, run
from pilothouse.fleet import rollout_plan, rollouts
from pilothouse.fleet.upgrade_plan import Severity
from pilothouse.identity.policy import Permission
from pilothouse.platform import Platform
from pilothouse.store.operations import OperationRecord
from pilothouse.vocabulary import OperationPhase

app = typer.Typer(
    name="rollout",
    help="Replace a cluster's nodes with new-version nodes (node rollouts).",
    no_args_is_help=True,
)

ClusterArgument = Annotated[str, typer.Argument(help="The cluster whose nodes to replace.")]
ToOption = Annotated[
    str | None,
    typer.Option("--to", help="Kubelet version of the new nodes (default: the control plane's version)."),
]
SurgeOption = Annotated[
    str, typer.Option("--max-surge", help="Nodes above the cluster's size during the rollout: a count or N%.")
]
UnavailableOption = Annotated[
    str,
    typer.Option(
        "--max-unavailable", help="Nodes below the cluster's size (cordoned, draining): a count or N%."
    ),
]
AllOption = Annotated[
    bool, typer.Option("--all", help="Replace every node, including those already on the version.")
]


def _print_plan(plan: rollout_plan.RolloutPlan) -> None:
    verdict = "[green]allowed[/]" if plan.allowed else "[red]refused[/]"
    console.print(
        f"node rollout of {plan.cluster} to {plan.target}: {len(plan.old_nodes)} node(s) in "
        f"{len(plan.batches)} batch(es), maxSurge {plan.limits.max_surge}, "
        f"maxUnavailable {plan.limits.max_unavailable}: {verdict}"
    )
    table = Table("#", "OLD NODES", "SURGE (before drain)", "REPLACE (after delete)", title="batches")
    for i, batch in enumerate(plan.batches, 1):
        table.add_row(str(i), ", ".join(batch.old), ", ".join(batch.surge), ", ".join(batch.replace))
    console.print(table)
    if plan.findings:
        findings = Table("SEVERITY", "CODE", "FINDING", "WHAT TO DO", title="findings")
        for f in plan.findings:
            style = "red" if f.severity is Severity.BLOCKER else "yellow"
            findings.add_row(f"[{style}]{f.severity}[/]", f.code, f.message, f.hint)
        console.print(findings)


@app.command("plan")
def plan(
    cluster: ClusterArgument,
    to: ToOption = None,
    max_surge: SurgeOption = "1",
    max_unavailable: UnavailableOption = "0",
    replace_all: AllOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The batches a node rollout of CLUSTER would run, and what blocks or risks it."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_READ, cluster) as (platform, _principal):
        result = run(
            platform.rollouts.plan(
                cluster, to=to, max_surge=max_surge, max_unavailable=max_unavailable, replace_all=replace_all
            )
        )
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2))
        else:
            _print_plan(result)
        if not result.allowed:
            raise typer.Exit(1)


@app.command("start")
def start(
    cluster: ClusterArgument,
    to: ToOption = None,
    max_surge: SurgeOption = "1",
    max_unavailable: UnavailableOption = "0",
    replace_all: AllOption = False,
    pdb_timeout: Annotated[
        str,
        typer.Option(
            "--pdb-timeout", help="Pause when PodDisruptionBudgets block a drain this long (e.g. 5m)."
        ),
    ] = "5m",
    health_timeout: Annotated[
        str,
        typer.Option("--health-timeout", help="Pause when a workload stays unavailable this long (e.g. 2m)."),
    ] = "2m",
    detach: Annotated[
        bool, typer.Option("--detach", help="Only record the operation; `pilothouse up` runs it.")
    ] = False,
) -> None:
    """Replace CLUSTER's nodes, batch by batch, never breaking a PodDisruptionBudget (resumable)."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_WRITE, cluster) as (platform, _principal):
        record = run(
            platform.rollouts.start(
                cluster,
                to=to,
                max_surge=max_surge,
                max_unavailable=max_unavailable,
                replace_all=replace_all,
                pdb_timeout=parse_duration(pdb_timeout).total_seconds(),
                health_timeout=parse_duration(health_timeout).total_seconds(),
                created_by=CLI_USER,
            )
        )
        spec = rollouts.RolloutSpec.from_dict(record.spec)
        console.print(
            f"operation {record.id}: replace {len(spec.old_nodes)} node(s) of {cluster} with "
            f"{spec.kubelet_version} nodes in {len(spec.batches)} batch(es)"
        )
        if detach:
            return
        _drive(platform, record.id)


def _drive(platform: Platform, operation_id: str) -> None:
    with progress_bars() as sink:
        record: OperationRecord = run(platform.rollouts.run(operation_id, progress=sink))
    colour = {OperationPhase.SUCCEEDED: "green", OperationPhase.FAILED: "red"}.get(record.phase, "yellow")
    console.print(f"operation {record.id} [{colour}]{record.phase}[/]: {record.message}")
    if record.phase is OperationPhase.FAILED:
        raise typer.Exit(1)
    if record.phase is OperationPhase.PAUSED:
        console.print(
            f"resume with `pilothouse operations resume {record.id}`, "
            f"or `pilothouse operations abort {record.id}`"
        )
        raise typer.Exit(2)
