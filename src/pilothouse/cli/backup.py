"""``pilothouse backup …`` and ``pilothouse dr drill``: etcd backups, restores and DR drills.

``backup create`` snapshots a running local cluster now; ``backup list`` shows
what exists; ``backup restore`` records a durable restore operation and drives
it here with progress bars (``pilothouse operations resume`` finishes it if this
process dies); ``backup delete`` removes one. ``dr drill`` restores a fresh
snapshot into a scratch cluster, compares every object and reports RPO and RTO
(a Rich table, or ``--json``). ``fleet.backups`` and ``fleet.dr_drill`` do the work.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.filesize import decimal
from rich.table import Table

from pilothouse.cli.access import authorized_for
from pilothouse.cli.output import cli_errors, console, err_console, progress_bars, run
from pilothouse.identity.policy import Permission
from pilothouse.platform import Platform
from pilothouse.store.backups import BackupRecord
from pilothouse.store.operations import OperationRecord
from pilothouse.vocabulary import BackupStatus, OperationPhase

app = typer.Typer(
    name="backup", help="etcd backups of local clusters: create, list, restore, delete.", no_args_is_help=True
)
dr_app = typer.Typer(name="dr", help="Disaster-recovery drills.", no_args_is_help=True)
CLI_USER = "cli"

ClusterArg = Annotated[str, typer.Argument(help="The cluster's name.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
DetachOption = Annotated[
    bool, typer.Option("--detach", help="Only record the operation; `pilothouse up` runs it.")
]


def _backup_row(table: Table, backup: BackupRecord) -> None:
    colour = {BackupStatus.COMPLETED: "green", BackupStatus.FAILED: "red"}.get(backup.status, "yellow")
    table.add_row(
        backup.id[:12],
        backup.cluster,
        backup.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        f"[{colour}]{backup.status}[/]",
        backup.trigger + (f" ({backup.schedule})" if backup.schedule else ""),
        decimal(backup.size_bytes) if backup.size_bytes else "",
        str(backup.etcd_revision or ""),
        backup.kubernetes_version,
        backup.location or backup.message,
    )


def _backup_table(title: str | None = None) -> Table:
    return Table(
        "ID",
        "CLUSTER",
        "TAKEN (UTC)",
        "STATUS",
        "TRIGGER",
        "SIZE",
        "REVISION",
        "K8S",
        "LOCATION",
        title=title,
    )


@app.command("create")
def create(cluster: ClusterArg, as_json: JsonOption = False) -> None:
    """Snapshot CLUSTER's etcd now and store it (checksummed) in the configured backup store."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_WRITE, cluster) as (platform, _principal):
        with progress_bars() as sink:
            backup = run(platform.backups.create(cluster, progress=sink))
        if as_json:
            typer.echo(json.dumps(backup.to_dict(), indent=2))
            return
        table = _backup_table()
        _backup_row(table, backup)
        console.print(table)
        console.print(f"sha256 {backup.sha256}")


@app.command("list")
def list_(
    cluster: Annotated[str | None, typer.Argument(help="Only this cluster's backups.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Backups, newest first."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_READ, cluster) as (platform, _principal):
        records = platform.backups.records(cluster)
        if as_json:
            typer.echo(json.dumps([b.to_dict() for b in records], indent=2))
            return
        if not records:
            console.print("no backups" + (f" of {cluster}" if cluster else ""))
            console.print("take one with `pilothouse backup create CLUSTER`")
            return
        table = _backup_table()
        for backup in records:
            _backup_row(table, backup)
        console.print(table)


@app.command("restore")
def restore(
    cluster: ClusterArg,
    backup: Annotated[str, typer.Argument(help="The backup's id (a unique prefix will do).")],
    force: Annotated[
        bool, typer.Option("--force", help="Stop the running cluster and restore (its newer data is lost).")
    ] = False,
    detach: DetachOption = False,
) -> None:
    """Restore CLUSTER's etcd from BACKUP into fresh members, then restart the control plane (resumable)."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_WRITE, cluster) as (platform, _principal):
        record = run(platform.backups.start_restore(cluster, backup, force=force, created_by=CLI_USER))
        console.print(f"operation {record.id}: restore {cluster} from backup {record.spec['backup'][:12]}")
        if not detach:
            _drive(platform, record.id)


@app.command("delete")
def delete(backup: Annotated[str, typer.Argument(help="The backup's id (a unique prefix will do).")]) -> None:
    """Delete a backup: its snapshot file and its record."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_WRITE, None) as (platform, _principal):
        removed = platform.backups.delete(backup)
        console.print(f"deleted backup {removed.id[:12]} of {removed.cluster}")


def _drive(platform: Platform, operation_id: str, *, quiet: bool = False) -> OperationRecord:
    """Run the operation here with progress bars; its summary goes to stderr when ``quiet`` (JSON)."""
    with progress_bars() as sink:
        record = run(platform.operations.run(operation_id, progress=sink))
    colour = {OperationPhase.SUCCEEDED: "green", OperationPhase.FAILED: "red"}.get(record.phase, "yellow")
    (err_console if quiet else console).print(
        f"operation {record.id} [{colour}]{record.phase}[/]: {record.message}"
    )
    if record.phase is OperationPhase.FAILED:
        raise typer.Exit(1)
    return record


@dr_app.command("drill")
def drill(
    cluster: ClusterArg,
    keep_backup: Annotated[
        bool, typer.Option("--keep-backup", help="Keep the drill's snapshot as a backup of CLUSTER.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Snapshot CLUSTER, restore it into a scratch cluster, compare every object, report RPO and RTO."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_WRITE, cluster) as (platform, _principal):
        record = run(platform.drills.start(cluster, keep_backup=keep_backup, created_by=CLI_USER))
        if not as_json:
            console.print(f"operation {record.id}: DR drill of {cluster}")
        done = _drive(platform, record.id, quiet=as_json)
        report = platform.drills.report(done.id)
        if report is None:
            console.print(f"no report: the drill ended {done.phase} ({done.message})")
            raise typer.Exit(1)
        if as_json:
            typer.echo(json.dumps(report, indent=2))
        else:
            _print_report(report)
        if not report["comparison"]["ok"]:
            raise typer.Exit(1)


def _print_report(report: dict[str, Any]) -> None:
    comparison = report["comparison"]
    summary = Table(title=f"DR drill of {report['cluster']}", show_header=False)
    summary.add_column("what", style="bold")
    summary.add_column("value")
    verdict = "[green]equal[/]" if comparison["ok"] else "[red]DIFFERENT[/]"
    last = report.get("last_backup_age_seconds")
    for what, value in (
        ("verdict", verdict),
        (
            "objects",
            f"{comparison['source_objects']} in the snapshot, {comparison['equal']} identical, "
            f"{comparison['updated_after_restore'] + comparison['replaced_after_restore']} rewritten after "
            "the restore by the restored control plane",
        ),
        (
            "missing / mismatched / unexpected",
            f"{comparison['missing']} / {comparison['mismatched']} / {comparison['unexpected']}",
        ),
        (
            "snapshot",
            f"backup {report['backup'][:12]}, revision {report['snapshot_revision']}, "
            f"{decimal(report['snapshot_bytes'])}",
        ),
        ("RPO", f"{report['rpo_seconds']:.1f} s (restore point age when recovery started)"),
        (
            "RTO",
            f"{report['rto_seconds']:.1f} s (recovery start → every object served; "
            f"API serving after {report['time_to_serving_seconds']:.1f} s)",
        ),
        ("newest earlier backup", f"{last:.0f} s old" if last is not None else "none"),
    ):
        summary.add_row(what, value)
    console.print(summary)
    resources = Table("RESOURCE", "SNAPSHOT", "RESTORED", "PRESENT", "MISSING", "MISMATCHED", title="objects")
    for row in comparison["resources"]:
        if not (row["source"] or row["restored"]):
            continue
        bad = row["missing"] or row["mismatched"]
        resources.add_row(
            row["resource"],
            str(row["source"]),
            str(row["restored"]),
            str(row["equal"]),
            f"[red]{row['missing']}[/]" if row["missing"] else "0",
            f"[red]{row['mismatched']}[/]" if bad and row["mismatched"] else "0",
        )
    console.print(resources)
    for kind in ("missing", "mismatched", "unexpected"):
        for example in comparison["examples"][kind][:10]:
            console.print(f"[red]{kind}[/]: {example}")
