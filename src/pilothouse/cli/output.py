"""What every CLI command shares: the Rich consoles, error printing, confirmation, progress rendering."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterator
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from pilothouse import errors
from pilothouse.progress import ProgressEvent, ProgressSink

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")
#: ``--yes``: a destructive command does not ask first (``confirm_or_exit``).
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Print a ``PilothouseError`` as ``error:``/``hint:`` on stderr and exit 1, no traceback."""
    try:
        yield
    except errors.PilothouseError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False, markup=True, soft_wrap=True)
        if exc.hint:
            err_console.print(f"[bold]hint:[/] {exc.hint}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("error: interrupted")
        raise typer.Exit(130) from None


def confirm_or_exit(question: str, *, yes: bool) -> None:
    """Ask ``question`` (unless ``yes``); a no exits 1 with nothing done."""
    if not yes and not typer.confirm(question):
        raise typer.Exit(1)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@contextlib.contextmanager
def progress_bars() -> Iterator[ProgressSink]:
    """A ``ProgressSink`` that draws one Rich bar per phase."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[phase]:<10}"),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )
    tasks: dict[str, Any] = {}
    started = False

    def sink(event: ProgressEvent) -> None:
        nonlocal started
        if not started:  # start drawing on the first event, so an early error prints no blank line
            started = True
            progress.start()
        task = tasks.get(event.phase)
        total = event.total or None
        if task is None:
            tasks[event.phase] = progress.add_task(
                event.message, phase=event.phase, total=total, completed=event.done
            )
        else:
            progress.update(task, description=event.message, total=total, completed=event.done)

    try:
        yield sink
    finally:
        if started:
            progress.stop()
