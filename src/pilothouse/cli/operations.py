"""``pilothouse upgrade …`` and ``pilothouse operations …``: durable day-2 operations.

``upgrade plan`` prints the planner's steps, blockers and warnings (or JSON);
``upgrade apply`` records the operation and drives it here with progress bars.
If this process dies, the operation stays in the store: ``pilothouse up``
picks it up, or ``operations resume ID`` drives it from another terminal;
``operations abort ID`` carries the abort out here when nothing else drives it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from pilothouse import errors
from pilothouse.cli.access import authorized_for, authorized_operation
from pilothouse.cli.output import cli_errors, console, progress_bars, run
from pilothouse.fleet import operations, upgrade_plan
from pilothouse.identity.policy import Permission
from pilothouse.platform import Platform
from pilothouse.store.operations import OperationRecord
from pilothouse.vocabulary import OperationPhase, OperationRequest

upgrade_app = typer.Typer(name="upgrade", help="Plan and run control-plane upgrades.", no_args_is_help=True)
app = typer.Typer(
    name="operations",
    help="Durable operations (upgrades, …): list, show, pause, resume, abort.",
    no_args_is_help=True,
)
CLI_USER = "cli"

ToOption = Annotated[str, typer.Option("--to", help="The Kubernetes version to upgrade to, e.g. 1.36.3.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _print_plan(plan: upgrade_plan.UpgradePlan) -> None:
    verdict = "[green]allowed[/]" if plan.allowed else "[red]blocked[/]"
    console.print(f"upgrade of {plan.cluster}: {plan.current} → {plan.target}: {verdict}")
    steps = Table("#", "STEP", "WHAT", title="steps")
    for i, step in enumerate(plan.steps, 1):
        steps.add_row(str(i), step.name, step.title)
    console.print(steps)
    if plan.findings:
        findings = Table("SEVERITY", "CODE", "FINDING", "WHAT TO DO", title="findings")
        for f in plan.findings:
            style = "red" if f.severity is upgrade_plan.Severity.BLOCKER else "yellow"
            findings.add_row(f"[{style}]{f.severity}[/]", f.code, f.message, f.hint)
        console.print(findings)


@upgrade_app.command("plan")
def plan(
    cluster: Annotated[str, typer.Argument(help="The cluster to upgrade.")],
    to: ToOption,
    as_json: JsonOption = False,
) -> None:
    """The ordered steps of upgrading CLUSTER, and everything that blocks or risks it."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_READ, cluster) as (platform, _principal):
        result = run(_plan(platform, cluster, to))
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2))
        else:
            _print_plan(result)
        if not result.allowed:
            raise typer.Exit(1)


async def _plan(platform: Platform, cluster: str, to: str) -> upgrade_plan.UpgradePlan:
    try:
        return await platform.upgrades.plan(cluster, to)
    finally:
        await platform.inventory.stop()


@upgrade_app.command("apply")
def apply(
    cluster: Annotated[str, typer.Argument(help="The cluster to upgrade.")],
    to: ToOption,
    detach: Annotated[
        bool, typer.Option("--detach", help="Only record the operation; `pilothouse up` runs it.")
    ] = False,
) -> None:
    """Upgrade CLUSTER's control plane, one process at a time (resumable)."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_WRITE, cluster) as (platform, _principal):
        record = run(_start(platform, cluster, to))
        console.print(f"operation {record.id}: upgrade {cluster} to {record.spec['to']}")
        if detach:
            return
        drive(platform, record.id)


async def _start(platform: Platform, cluster: str, to: str) -> OperationRecord:
    try:
        return await platform.upgrades.start(cluster, to, created_by=CLI_USER)
    finally:
        await platform.inventory.stop()


def drive(platform: Platform, operation_id: str) -> None:
    """Run an operation here with progress bars; exit 1 if it fails."""
    with progress_bars() as sink:
        record = run(platform.operations.run(operation_id, progress=sink))
    _summary(record)
    if record.phase is OperationPhase.FAILED:
        raise typer.Exit(1)


def _summary(record: OperationRecord) -> None:
    colour = {OperationPhase.SUCCEEDED: "green", OperationPhase.FAILED: "red"}.get(record.phase, "yellow")
    console.print(f"operation {record.id} [{colour}]{record.phase}[/]: {record.message}")


def _resolve(platform: Platform, operation_id: str) -> OperationRecord:
    matches = [r for r in platform.operations.store.list() if r.id.startswith(operation_id)]
    if len(matches) != 1:
        raise errors.NotFound(
            f"{len(matches)} operations match {operation_id!r}",
            hint="see `pilothouse operations list` (a unique prefix of the id will do)",
        )
    return matches[0]


@app.command("list")
def list_(
    cluster: Annotated[str | None, typer.Option(help="Only this cluster.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Operations, newest first."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_READ, cluster) as (platform, _principal):
        records = platform.operations.store.list(cluster=cluster)
        if as_json:
            typer.echo(json.dumps([_as_dict(r) for r in records], indent=2))
            return
        table = Table("ID", "KIND", "CLUSTER", "PHASE", "PROGRESS", "CREATED", "MESSAGE")
        for r in records:
            steps = operations.journal(r)
            done = sum(s.state is operations.StepState.DONE for s in steps)
            table.add_row(
                r.id[:12],
                r.kind,
                r.cluster,
                str(r.phase) + (f" ({r.requested} requested)" if r.requested else ""),
                f"{done}/{len(steps)}",
                r.created_at.isoformat(timespec="seconds"),
                r.message,
            )
        console.print(table)


@app.command("show")
def show(
    operation_id: Annotated[str, typer.Argument(help="The operation's id (a unique prefix will do).")],
    as_json: JsonOption = False,
) -> None:
    """One operation and its journal of steps."""
    with cli_errors(), authorized_operation(Permission.CLUSTERS_READ, operation_id) as (platform, _principal):
        record = _resolve(platform, operation_id)
        if as_json:
            typer.echo(json.dumps(_as_dict(record), indent=2))
            return
        _summary(record)
        table = Table("#", "STEP", "STATE", "ATTEMPTS", "OUTCOME", "FINISHED")
        for i, step in enumerate(operations.journal(record), 1):
            table.add_row(
                str(i), step.title, step.state.value, str(step.attempts), step.detail, step.finished_at or ""
            )
        console.print(table)


@app.command("pause")
def pause(operation_id: Annotated[str, typer.Argument(help="The operation's id.")]) -> None:
    """Pause after the current step."""
    with (
        cli_errors(),
        authorized_operation(Permission.CLUSTERS_WRITE, operation_id) as (platform, _principal),
    ):
        record = platform.operations.store.request(
            _resolve(platform, operation_id).id, OperationRequest.PAUSE
        )
        console.print(f"operation {record.id}: pause requested (takes effect after the current step)")


@app.command("abort")
def abort(operation_id: Annotated[str, typer.Argument(help="The operation's id.")]) -> None:
    """Abort after the current step; the cluster is left serving.

    When no live process drives the operation (it was paused, or its process died), the
    abort is carried out here; otherwise that process carries it out after its current step.
    """
    with (
        cli_errors(),
        authorized_operation(Permission.CLUSTERS_WRITE, operation_id) as (platform, _principal),
    ):
        record = platform.operations.store.request(
            _resolve(platform, operation_id).id, OperationRequest.ABORT
        )
        owner = platform.clusters.store.find(record.cluster)
        if owner is not None and not platform.clusters.leases.busy(owner, datetime.now(UTC)):
            console.print(f"operation {record.id}: abort requested; no process drives it, aborting here")
            try:
                drive(platform, record.id)
            except errors.Conflict:  # a runner took it meanwhile: it carries the abort out
                console.print(f"operation {record.id}: another process took it over and aborts it")
            return
        console.print(f"operation {record.id}: abort requested (takes effect after the current step)")


@app.command("resume")
def resume(
    operation_id: Annotated[str, typer.Argument(help="The operation's id.")],
    detach: Annotated[
        bool, typer.Option("--detach", help="Only mark it resumable; `pilothouse up` runs it.")
    ] = False,
) -> None:
    """Resume a paused or interrupted operation and drive it to its end here."""
    with (
        cli_errors(),
        authorized_operation(Permission.CLUSTERS_WRITE, operation_id) as (platform, _principal),
    ):
        record = platform.operations.store.resume(_resolve(platform, operation_id).id)
        console.print(f"operation {record.id}: resuming")
        if not detach:
            drive(platform, record.id)


def _as_dict(record: OperationRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "kind": record.kind,
        "cluster": record.cluster,
        "spec": dict(record.spec),
        "phase": record.phase.value,
        "requested": record.requested.value if record.requested else None,
        "message": record.message,
        "steps": [s.to_dict() for s in operations.journal(record)],
        "created_by": record.created_by,
        "created_at": record.created_at.isoformat(),
        "started_at": record.started_at.isoformat() if record.started_at else None,
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
    }
