"""``pilothouse kubeconfig CLUSTER``: short-lived credentials for the signed-in user.

Prints (or writes, mode 0600) a kubeconfig whose client certificate carries
the caller's own roles on CLUSTER and expires within the hour
(``identity.cluster_access``). The caller is who ``cli.access`` says (the
session of ``pilothouse login`` or ``PILOTHOUSE_TOKEN``); the gate is
``clusters:read`` somewhere, and the service refuses a caller holding no role
on CLUSTER. The admin kubeconfig remains ``pilothouse cluster kubeconfig``
(``clusters:credentials``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from pilothouse.cli import alerts
from pilothouse.cli.access import authorized_anywhere
from pilothouse.cli.output import cli_errors, err_console, run
from pilothouse.identity.policy import Permission


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (an existing file is narrowed to 0600 first)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)


def kubeconfig(
    cluster: Annotated[str, typer.Argument(help="The cluster.")],
    ttl: Annotated[
        str | None, typer.Option("--ttl", help="Lifetime, e.g. 30m (default and maximum: 1h).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (mode 0600) instead of stdout.")
    ] = None,
) -> None:
    """Short-lived credentials (at most 1 h) for CLUSTER, carrying only your roles there."""
    with cli_errors(), authorized_anywhere(Permission.CLUSTERS_READ) as (platform, principal):
        lifetime = alerts.parse_duration(ttl) if ttl is not None else None
        issued = run(platform.cluster_access.issue_kubeconfig(principal, cluster, ttl=lifetime))
        if output is None:
            typer.echo(issued.kubeconfig, nl=False)
        else:
            write_private(output, issued.kubeconfig)
        err_console.print(
            f"{issued.user} on {issued.cluster} as {', '.join(issued.groups)}; "
            f"valid until {issued.not_after.isoformat(timespec='seconds')}"
            + (f"; wrote {output}" if output is not None else ""),
            highlight=False,
            markup=False,
        )
