"""``pilothouse logs CLUSTER PROCESS [--follow]``: control-plane logs of a local cluster."""

from __future__ import annotations

from typing import Annotated

import typer

from pilothouse.cli.access import authorized_for
from pilothouse.cli.output import cli_errors
from pilothouse.identity.policy import Permission
from pilothouse.providers.local import logfiles


def logs(
    cluster: Annotated[str, typer.Argument(help="Cluster name.")],
    process: Annotated[
        str,
        typer.Argument(help="Process (kube-apiserver-0, etcd-1, kwok, …) or component when there is one."),
    ],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    lines: Annotated[int, typer.Option("--tail", "-n", min=0, help="Lines of history to print first.")] = 100,
) -> None:
    """Print a control-plane process's log (rotated copies sit next to it as .1, .2, …)."""
    with cli_errors(), authorized_for(Permission.CLUSTERS_READ, cluster) as (platform, _principal):
        path = platform.clusters.log_file(cluster, process)
    for line in logfiles.tail(path, lines):
        typer.echo(line)
    if follow:
        try:
            for line in logfiles.follow(path):
                typer.echo(line)
        except KeyboardInterrupt:
            raise typer.Exit(0) from None
