"""``pilothouse cluster …``: create, import, list, show, kubeconfig, start, stop, delete."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pilothouse import errors
from pilothouse.cli.access import authorized_for
from pilothouse.cli.output import (
    YesOption,
    cli_errors,
    confirm_or_exit,
    console,
    err_console,
    progress_bars,
    run,
)
from pilothouse.fleet import requests
from pilothouse.identity.policy import Permission
from pilothouse.kube.credentials import read_kubeconfig_file

app = typer.Typer(name="cluster", help="Create, import and manage clusters.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Cluster name (lowercase letters, digits, '-').")]


@app.command("create")
def create(
    name: NameArg,
    provider: Annotated[
        str, typer.Option(help="Only 'local' creates clusters; use `cluster import` for others.")
    ] = "local",
    nodes: Annotated[int, typer.Option(help="Simulated (kwok) worker nodes.")] = 3,
    control_planes: Annotated[
        int, typer.Option("--control-planes", help="1, or 3 for HA (3 etcd, 3 API servers, HAProxy).")
    ] = 1,
    version: Annotated[
        str | None, typer.Option(help="Kubernetes version (default: the configured one).")
    ] = None,
    api_port: Annotated[
        int | None,
        typer.Option("--api-port", help="Port of the cluster's API endpoint (default: any free port)."),
    ] = None,
) -> None:
    """Create a local cluster of real control-plane processes and wait until its nodes are Ready."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_WRITE, None) as (platform, _principal):
        if provider != "local":
            raise errors.InvalidInput(
                f"unknown provider {provider!r}",
                hint="use --provider local, or `pilothouse cluster import` for existing clusters",
            )
        request = requests.parse(
            requests.CreateLocalCluster,
            name=name,
            nodes=nodes,
            control_planes=control_planes,
            version=version,
            api_port=api_port,
        )
        with progress_bars() as sink:
            record = run(platform.clusters.create_local(request, progress=sink))
        console.print(
            f"cluster [bold]{record.name}[/] is {record.phase}: {record.message}; API at {record.server_url}"
        )
        console.print(f"kubeconfig: pilothouse cluster kubeconfig {record.name} > {record.name}.kubeconfig")


@app.command("import")
def import_(
    name: NameArg,
    kubeconfig: Annotated[Path, typer.Option("--kubeconfig", help="Path of the kubeconfig to import.")],
    context: Annotated[str | None, typer.Option(help="Context to use (default: current-context).")] = None,
) -> None:
    """Register an existing cluster; its credentials are checked and stored encrypted."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_WRITE, None) as (platform, _principal):
        text = read_kubeconfig_file(kubeconfig)
        request = requests.parse(requests.ImportCluster, name=name, kubeconfig=text, context=context)
        record = run(
            platform.clusters.import_cluster(
                request, source=str(kubeconfig), base_dir=kubeconfig.parent.resolve()
            )
        )
        console.print(
            f"imported [bold]{record.name}[/]: Kubernetes v{record.kubernetes_version}, {record.message}, {record.server_url}"
        )


@app.command("list")
def list_() -> None:
    """List clusters."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_READ, None) as (platform, _principal):
        table = Table("NAME", "PROVIDER", "PHASE", "VERSION", "NODES", "CONTROL PLANES", "API", "MESSAGE")
        for r in platform.clusters.clusters():
            nodes = r.spec.get("nodes", r.runtime.get("nodes", ""))
            table.add_row(
                r.name,
                r.provider,
                r.phase,
                r.kubernetes_version,
                str(nodes),
                str(r.spec.get("control_planes", "")),
                r.server_url,
                r.message,
            )
        console.print(table)


@app.command("show")
def show(name: NameArg) -> None:
    """Show one cluster, with the live state of a local cluster's processes."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_READ, name) as (platform, _principal):
        view = platform.clusters.view(name)
        r = view.record
        for key, value in (
            ("name", r.name),
            ("provider", r.provider),
            ("phase", r.phase),
            ("desired", r.desired_state),
            ("message", r.message),
            ("version", r.kubernetes_version),
            ("api", r.server_url),
            ("created", r.created_at.isoformat()),
            ("updated", r.updated_at.isoformat()),
        ):
            console.print(f"[bold]{key:>9}[/]: {value}", highlight=False)
        if view.processes:
            table = Table("PROCESS", "RUNNING", "PID", "LISTENS ON")
            recorded = r.runtime.get("processes", {})
            for process, alive in sorted(view.processes.items()):
                table.add_row(
                    process,
                    "yes" if alive else "[red]no[/]",
                    str(recorded.get(process, {}).get("pid", "")),
                    " ".join(view.listens.get(process, ())),
                )
            console.print(table)


@app.command("kubeconfig")
def kubeconfig(
    name: NameArg,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (mode 0600) instead of stdout.")
    ] = None,
) -> None:
    """Print (or write) an admin kubeconfig for the cluster."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_CREDENTIALS, name) as (platform, _principal):
        text = platform.clusters.kubeconfig(name)
        if output is None:
            typer.echo(text, nl=False)
            return
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        err_console.print(f"wrote {output}")


@app.command("start")
def start(name: NameArg) -> None:
    """Start a stopped local cluster (same ports, same data)."""
    with (
        cli_errors(),
        authorized_for(Permission.CLUSTERS_WRITE, name) as (platform, _principal),
        progress_bars() as sink,
    ):
        record = run(platform.clusters.start(name, progress=sink))
        console.print(f"cluster [bold]{record.name}[/] is {record.phase}")


@app.command("stop")
def stop(name: NameArg) -> None:
    """Stop every process of a local cluster, keeping its data."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_WRITE, name) as (platform, _principal):
        record = run(platform.clusters.stop(name))
        console.print(f"cluster [bold]{record.name}[/] is {record.phase}")


@app.command("delete")
def delete(
    name: NameArg,
    yes: YesOption = False,
) -> None:
    """Delete a cluster: a local one's processes and files; an imported one's record only."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_WRITE, name) as (platform, _principal):
        platform.clusters.get(name)
        confirm_or_exit(f"delete cluster {name}?", yes=yes)
        run(platform.clusters.delete(name))
        console.print(f"deleted cluster [bold]{name}[/]")


@app.command("inventory")
def inventory(
    name: NameArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Nodes, workloads and pods of a cluster, read through the watch caches."""
    from pilothouse.api.inventory import InventoryOut
    from pilothouse.fleet.inventory import FleetInventory

    async def take() -> InventoryOut:
        async with FleetInventory(platform.clusters.credentials) as fleet:
            cache = await fleet.ensure(name)
            try:
                snap = await cache.wait_synced(30.0)
            except TimeoutError:
                raise errors.ClusterUnreachable(
                    f"the inventory of {name!r} did not sync within 30 s",
                    hint="check `pilothouse fleet status`",
                ) from None
            return InventoryOut.of(snap)

    with cli_errors(), authorized_for(Permission.CLUSTERS_READ, name) as (platform, _principal):
        platform.clusters.get(name)
        out = run(take())
        if as_json:
            typer.echo(out.model_dump_json(indent=2))
            return
        console.print(
            f"[bold]{name}[/]: nodes {out.nodes_ready}/{out.nodes_total} Ready"
            f" ({out.nodes_unschedulable} cordoned), {out.namespaces} namespaces,"
            f" pods {out.pods_ready}/{out.pods_total} ready {dict(sorted(out.pods_by_phase.items()))}",
            highlight=False,
        )
        if out.pods_waiting:
            console.print(f"waiting pods: {out.pods_waiting}", highlight=False)
        table = Table("KIND", "NAMESPACE", "NAME", "READY", "AVAILABLE")
        for w in out.workloads:
            table.add_row(w.kind, w.namespace, w.name, f"{w.ready}/{w.desired}", str(w.available))
        console.print(table)
