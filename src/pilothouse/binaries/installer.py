"""Install a Kubernetes version's binaries into the cache: the one entry point that does.

Owns the sequence lock → (already installed? stop) → fetch or build into a
staging directory → run every binary's ``--version`` → hash into a manifest →
atomic rename (``cache``). An install that verifies but lacks binaries added
to Pilothouse later (etcdctl and etcdutl) is *topped up* in place
(``BinaryCache.add_binaries``): only the missing ones are fetched or built
(``GoBuilder.build_etcd``), the installed binaries are not touched (clusters
running from them keep running), and the new manifest keeps the old records. ``download`` (httpx) or ``gobuild`` (the Go toolchain)
does the heavy lifting; the CLI and, later, the local provider call :func:`install`.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pilothouse import errors
from pilothouse.binaries import cache as cache_mod
from pilothouse.binaries import catalog, download, gobuild, probe
from pilothouse.binaries import manifest as manifest_mod

ProgressCallback = download.ProgressCallback
PhaseCallback = gobuild.PhaseCallback


def install(
    version: str,
    *,
    cache: cache_mod.BinaryCache,
    source: Literal["download", "source"],
    sources: download.DownloadSources | None = None,
    progress: ProgressCallback | None = None,
    phase: PhaseCallback | None = None,
    force: bool = False,
    with_kwokctl: bool = True,
    go: str = "go",
    now: datetime | None = None,
) -> Path:
    """Install ``version`` and return its cache directory.

    A no-op when the version is installed, holds every wanted binary and passes
    ``verify`` (unless ``force``); a corrupt install is replaced. ``progress``
    receives download bytes, ``phase`` receives build/verification phases
    (``gobuild.PHASES``). On any failure nothing is installed and an existing
    install of the version is left untouched.
    """
    pins = catalog.pins_for(version)
    names = catalog.binary_names(with_kwokctl=with_kwokctl)
    report = phase or (lambda _phase, _detail: None)
    if source not in ("download", "source"):
        raise errors.InvalidInput(f"unknown binary source {source!r}", hint="use 'download' or 'source'")

    with cache.lock(pins.kubernetes):
        existing = None if force else _usable(cache, pins, report)
        if existing is not None:
            missing = [name for name in names if name not in existing.binaries]
            if not missing:
                return cache.version_dir(pins.kubernetes)
            if set(missing) <= set(gobuild.ETCD_PACKAGES):
                return _top_up(
                    existing,
                    missing,
                    pins=pins,
                    cache=cache,
                    source=source,
                    sources=sources,
                    progress=progress,
                    phase=phase,
                    go=go,
                )

        staging = cache.new_staging_dir(pins.kubernetes)
        builder: gobuild.GoBuilder | None = None
        try:
            extra: dict[str, str]
            if source == "download":
                src = sources or download.DownloadSources()
                plan = download.plan_downloads(pins, src, with_kwokctl=with_kwokctl)
                origins = download.fetch_release(plan, staging, sources=src, progress=progress)
                recorded = pins
                extra = {"arch": src.arch}
            else:
                builder = gobuild.GoBuilder(cache.gobuild_root, go=go, phase=phase)
                result = builder.build(pins, with_kwokctl=with_kwokctl)
                for name, built in result.paths.items():
                    shutil.copy(built, staging / name)  # content and the executable bits
                origins = result.origins
                recorded = result.pins
                extra = {"go_version": result.go_version}

            report(gobuild.PHASE_VERIFYING, "")
            for name in names:
                report(gobuild.PHASE_VERIFYING, f"{name} --version")
                try:
                    probe.probe(staging / name, pins, name=name)
                except errors.BinaryError as exc:
                    raise errors.BinaryError(
                        f"{exc.message}; nothing was installed", hint=exc.hint, **exc.context
                    ) from exc
            built_manifest = manifest_mod.Manifest(
                kubernetes=pins.kubernetes,
                source=source,
                installed_at=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
                pins=recorded.as_dict(),
                binaries={
                    name: manifest_mod.describe_file(
                        staging / name, source=source, version=pins.version_of(name), origin=origins[name]
                    )
                    for name in names
                },
                extra=extra,
            )
            target = cache.install_from_staging(pins.kubernetes, staging, built_manifest)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        if builder is not None:
            builder.clean_outputs(pins)
        return target


def verify_installed(version: str, *, cache: cache_mod.BinaryCache) -> manifest_mod.Manifest:
    """Re-hash an installed version and run each binary's ``--version``."""
    recorded = cache.verify(version)
    pins = catalog.pins_for(version) if _is_supported(version) else None
    if pins is not None:
        for name in recorded.binaries:
            probe.probe(cache.path(version, name), pins, name=name)
    return recorded


def _is_supported(version: str) -> bool:
    return catalog.normalise_version(version) in catalog.SUPPORTED


def _usable(
    cache: cache_mod.BinaryCache, pins: catalog.ReleasePins, report: PhaseCallback
) -> manifest_mod.Manifest | None:
    """The manifest of an existing install that passes ``verify``, else None."""
    if not cache.is_installed(pins.kubernetes):
        return None
    report(gobuild.PHASE_VERIFYING, f"existing install in {cache.version_dir(pins.kubernetes)}")
    try:
        return cache.verify(pins.kubernetes)
    except errors.BinaryError as exc:
        report(gobuild.PHASE_VERIFYING, f"reinstalling: {exc.message}")
        return None


def _top_up(
    existing: manifest_mod.Manifest,
    missing: list[str],
    *,
    pins: catalog.ReleasePins,
    cache: cache_mod.BinaryCache,
    source: Literal["download", "source"],
    sources: download.DownloadSources | None,
    progress: ProgressCallback | None,
    phase: PhaseCallback | None,
    go: str,
) -> Path:
    """Add ``missing`` etcd-release binaries to a verified install (call under the lock)."""
    report = phase or (lambda _phase, _detail: None)
    staging = cache.new_staging_dir(pins.kubernetes)
    builder: gobuild.GoBuilder | None = None
    try:
        if source == "download":
            src = sources or download.DownloadSources()
            plan = download.plan_downloads(pins, src, only=missing)
            origins = download.fetch_release(plan, staging, sources=src, progress=progress)
        else:
            builder = gobuild.GoBuilder(cache.gobuild_root, go=go, phase=phase)
            result = builder.build_etcd(pins, missing)
            for name, built in result.paths.items():
                shutil.copy(built, staging / name)
            origins = result.origins
        report(gobuild.PHASE_VERIFYING, "")
        for name in missing:
            report(gobuild.PHASE_VERIFYING, f"{name} --version")
            probe.probe(staging / name, pins, name=name)
        added = {
            name: manifest_mod.describe_file(
                staging / name, source=source, version=pins.version_of(name), origin=origins[name]
            )
            for name in missing
        }
        topped = manifest_mod.Manifest(
            kubernetes=existing.kubernetes,
            source=existing.source,
            installed_at=existing.installed_at,
            pins=existing.pins,
            binaries={**existing.binaries, **added},
            extra=existing.extra,
        )
        target = cache.add_binaries(pins.kubernetes, staging, topped)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if builder is not None:
        builder.clean_outputs(pins)
    return target
