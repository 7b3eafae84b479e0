"""``pilothouse up``: the main job — API server, reconcilers and a local HA demo cluster."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer

from pilothouse import errors
from pilothouse.cli.context import open_platform
from pilothouse.cli.output import cli_errors, console
from pilothouse.fleet import requests
from pilothouse.platform import Platform

if TYPE_CHECKING:
    from pilothouse.api.app import Background

DEMO_CLUSTER = "demo"


def _start_demo(platform: Platform, nodes: int) -> tuple[str, list[Background]]:
    """Begin creating the demo cluster when binaries are there; say what happened."""
    if platform.clusters.store.find(DEMO_CLUSTER) is not None:
        return f"demo cluster '{DEMO_CLUSTER}' exists; the reconciler keeps it running", []
    request = requests.parse(requests.CreateLocalCluster, name=DEMO_CLUSTER, nodes=nodes, control_planes=3)
    try:
        record = platform.clusters.begin_local(request)
    except errors.BinaryError as exc:
        return f"no demo cluster: {exc.message} ({exc.hint})", []
    message = (
        f"creating demo cluster '{DEMO_CLUSTER}' (3 control planes behind HAProxy, {nodes} nodes);"
        f" watch it with `pilothouse cluster show {DEMO_CLUSTER}` or GET /api/v1/clusters/{DEMO_CLUSTER}"
    )
    return message, [lambda: platform.clusters.finish_local(record, keep_failed_record=True)]


def up(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8787).")] = None,
    demo: Annotated[bool, typer.Option("--demo/--no-demo", help="Create a local HA demo cluster.")] = True,
    demo_nodes: Annotated[int, typer.Option("--demo-nodes", help="Nodes of the demo cluster.")] = 30,
) -> None:
    """Run Pilothouse: the REST API, the reconcilers and (by default) a local HA demo cluster."""
    import uvicorn  # the web stack loads only for this command, keeping the CLI quick

    from pilothouse.api.app import create_app

    with cli_errors(), open_platform(log_level="INFO") as platform:
        settings = platform.settings
        listen_host = host or settings.api_host
        listen_port = port if port is not None else settings.api_port
        token = platform.ensure_bootstrap_token()
        demo_note, background = _start_demo(platform, demo_nodes) if demo else ("demo cluster disabled", [])
        url = f"http://{listen_host}:{listen_port}"
        console.print(
            f"[bold]Pilothouse[/] API: {url}  (OpenAPI document: {url}/openapi.json)", soft_wrap=True
        )
        console.print(
            f"store: {settings.effective_database_url.split('://', 1)[0]} at {settings.data_dir}",
            soft_wrap=True,
        )
        if token:
            console.print("bootstrap admin token (shown once, store it safely):", style="bold yellow")
            typer.echo(token)
        else:
            console.print(
                "authenticate with the bootstrap token printed at first start, or `pilothouse token create`"
            )
        console.print(f"try: curl -H 'Authorization: Bearer <token>' {url}/api/v1/clusters", soft_wrap=True)
        console.print(demo_note, soft_wrap=True)
        app = create_app(platform, background=background)
        config = uvicorn.Config(app, host=listen_host, port=listen_port, log_level="warning", lifespan="on")
        try:
            asyncio.run(uvicorn.Server(config).serve())
        except KeyboardInterrupt:
            pass  # uvicorn re-raises the SIGINT it handled; shutting down is what was asked
        except OSError as exc:
            raise errors.PortUnavailable(
                f"cannot listen on {listen_host}:{listen_port}: {exc.strerror}",
                hint="choose another --port or stop whatever uses it",
            ) from None
        console.print("Pilothouse stopped; local clusters keep running (`pilothouse cluster stop NAME`).")
