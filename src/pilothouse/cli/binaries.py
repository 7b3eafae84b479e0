"""``pilothouse binaries …``: install, list, verify and remove cached Kubernetes binaries.

A thin Typer front end over ``pilothouse.binaries``; Rich draws the progress bars
and tables. Results go to stdout, progress and errors to stderr. Every
``PilothouseError`` becomes ``error: …`` / ``hint: …`` and exit code 1
(:func:`cli_errors`, to be moved into a shared CLI module).
"""

from __future__ import annotations

from types import TracebackType
from typing import Annotated

import typer
from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from pilothouse import errors, settings
from pilothouse.binaries import cache as cache_mod
from pilothouse.binaries import catalog, download, gobuild, installer
from pilothouse.cli.output import cli_errors

app = typer.Typer(
    name="binaries",
    help="Install, list, verify and remove the Kubernetes binaries local clusters run.",
    no_args_is_help=True,
)

_stdout = Console(highlight=False, soft_wrap=True)
_stderr = Console(stderr=True, highlight=False)

VersionOption = Annotated[
    str | None,
    typer.Option("--version", help="Kubernetes version, e.g. 1.36.3 (default: the configured one)."),
]


def _cache() -> tuple[settings.Settings, cache_mod.BinaryCache]:
    loaded = settings.load_settings()
    return loaded, cache_mod.BinaryCache(loaded.binaries_dir)


@app.command("install")
def install_command(
    version: VersionOption = None,
    from_source: Annotated[
        bool, typer.Option("--from-source", help="Build with the local Go toolchain instead of downloading.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Reinstall even if already installed.")] = False,
    kwokctl: Annotated[
        bool, typer.Option("--kwokctl/--no-kwokctl", help="Also install kwokctl (used by benchmarks).")
    ] = True,
) -> None:
    """Download (or build) a Kubernetes version's binaries into the cache."""
    with cli_errors():
        loaded, cache = _cache()
        wanted = catalog.normalise_version(version or loaded.kubernetes_version)
        was_installed = cache.is_installed(wanted)
        with _InstallDisplay(_stderr) as display:
            path = installer.install(
                wanted,
                cache=cache,
                source="source" if from_source else "download",
                sources=download.DownloadSources.from_settings(loaded),
                progress=display.download,
                phase=display.phase,
                force=force,
                with_kwokctl=kwokctl,
            )
        verb = "already installed" if was_installed and not force and not display.changed else "installed"
        _stdout.print(f"Kubernetes v{wanted} binaries {verb} in {path}")


@app.command("list")
def list_command() -> None:
    """Show the installed versions."""
    with cli_errors():
        _, cache = _cache()
        versions = cache.installed_versions()
        if not versions:
            _stdout.print(f"no Kubernetes binaries installed in {cache.root}")
            _stdout.print("install some with `pilothouse binaries install --version <version>`")
            return
        table = Table("version", "components", "source", "size", "installed at")
        for ver in versions:
            try:
                recorded = cache.manifest(ver)
            except errors.BinaryError:
                table.add_row(f"v{ver}", Text("unreadable manifest", style="red"), "", "", "")
                continue
            table.add_row(
                f"v{ver}",
                ", ".join(sorted(recorded.binaries)),
                recorded.source,
                decimal(recorded.total_size),
                recorded.installed_at,
            )
        _stdout.print(table)


@app.command("verify")
def verify_command(version: VersionOption = None) -> None:
    """Re-hash an installed version's binaries and check each reports the right version."""
    with cli_errors():
        loaded, cache = _cache()
        wanted = catalog.normalise_version(version or loaded.kubernetes_version)
        recorded = installer.verify_installed(wanted, cache=cache)
        _stdout.print(
            f"v{wanted}: {len(recorded.binaries)} binaries match their checksums"
            f" ({', '.join(sorted(recorded.binaries))})"
        )


@app.command("remove")
def remove_command(
    version: Annotated[str, typer.Option("--version", help="Kubernetes version to remove, e.g. 1.36.3.")],
) -> None:
    """Delete an installed version from the cache."""
    with cli_errors():
        _, cache = _cache()
        wanted = catalog.normalise_version(version)
        cache.remove(wanted)
        _stdout.print(f"removed Kubernetes v{wanted} binaries from {cache.root}")


class _DownloadsOnly(ProgressColumn):
    """Shows the wrapped column for download tasks and nothing for build phases."""

    def __init__(self, inner: ProgressColumn) -> None:
        super().__init__()
        self.inner = inner

    def render(self, task: Task) -> Text:
        if task.fields.get("kind") != "download":
            return Text("")
        rendered = self.inner.render(task)
        return rendered if isinstance(rendered, Text) else Text.from_markup(str(rendered))


class _InstallDisplay:
    """Rich progress: a bar per downloaded file, a spinner per build phase."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            SpinnerColumn(finished_text="[green]✓[/]"),
            TextColumn("{task.description}"),
            _DownloadsOnly(BarColumn()),
            _DownloadsOnly(DownloadColumn()),
            _DownloadsOnly(TransferSpeedColumn()),
            TextColumn("{task.fields[detail]}", markup=False, style="dim"),
            TimeElapsedColumn(),
            console=console,
        )
        self._downloads: dict[str, TaskID] = {}
        self._phase: tuple[str, TaskID] | None = None
        self._lines = 0
        self._started = False
        self.changed = False

    def __enter__(self) -> _InstallDisplay:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._started:
            return
        if kind is None:
            self.finish()
        self.progress.stop()

    def _start(self) -> None:
        """Start drawing on the first event, so early errors print no empty progress area."""
        if not self._started:
            self._started = True
            self.progress.start()

    def download(self, name: str, done: int, total: int | None) -> None:
        self._start()
        self.changed = True
        task = self._downloads.get(name)
        if task is None:
            task = self.progress.add_task(name, total=total, kind="download", detail="")
            self._downloads[name] = task
        self.progress.update(task, completed=done, total=total)

    def phase(self, phase: str, detail: str) -> None:
        self._start()
        if phase != gobuild.PHASE_VERIFYING:
            self.changed = True
        if self._phase is None or self._phase[0] != phase:
            if self._phase is not None:
                self.progress.update(self._phase[1], total=1, completed=1, detail="")
            self._phase = (phase, self.progress.add_task(phase, total=None, kind="phase", detail=""))
            self._lines = 0
        if not detail:
            return
        if phase in (gobuild.PHASE_KUBERNETES, gobuild.PHASE_ETCD, gobuild.PHASE_KWOK):
            self._lines += 1
            detail = f"{self._lines} packages · {detail}"
        self.progress.update(self._phase[1], detail=detail[:80])

    def finish(self) -> None:
        if self._phase is not None:
            self.progress.update(self._phase[1], total=1, completed=1, detail="")
