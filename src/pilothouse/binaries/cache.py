"""The on-disk binary cache: one directory per Kubernetes version, installed atomically.

Owns the layout under ``Settings().binaries_dir``::

    <root>/v1.36.3/{etcd,kube-apiserver,…,kwok,kwokctl,manifest.json}
    <root>/.staging-v1.36.3-XXXX/   an install in progress (same filesystem as <root>)
    <root>/.v1.36.3.lock            held while installing or removing that version
    <root>/gobuild/…                ``gobuild``'s wrapper-module work directories

A version counts as installed only when ``<root>/v<ver>/manifest.json`` exists.
Installs fill a staging directory, check it against the manifest, write the
manifest last and ``rename`` the directory into place, so an interrupted install
leaves at most a ``.staging-*`` directory that nothing mistakes for an install
(the next install of that version deletes it). The standard library does all
the work (``os.rename``, ``fcntl.flock``, ``hashlib``); the local provider calls
:meth:`BinaryCache.require` and ``installer`` calls the rest.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from pilothouse import errors
from pilothouse.atomic_files import fsync_dir, fsync_file
from pilothouse.binaries import catalog
from pilothouse.binaries import manifest as manifest_mod
from pilothouse.vocabulary import CACHED_COMPONENTS, Component

MANIFEST_NAME = "manifest.json"
_VERSION_DIR_RE = re.compile(r"^v\d+\.\d+\.\d+$")


def install_hint(version: str, *, force: bool = False) -> str:
    """What to tell a user whose cache lacks ``version`` (or a binary of it)."""
    if version not in catalog.SUPPORTED:
        return f"this Pilothouse supports Kubernetes {', '.join(catalog.supported_versions())}"
    extra = " --force" if force else ""
    return f"run `pilothouse binaries install --version {version} --from-source{extra}`"


class BinaryCache:
    """Version-keyed Kubernetes binaries under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"BinaryCache({str(self.root)!r})"

    # --- layout -----------------------------------------------------------------------------

    def version_dir(self, version: str) -> Path:
        return self.root / f"v{catalog.normalise_version(version)}"

    def path(self, version: str, component: Component | str) -> Path:
        return self.version_dir(version) / str(component)

    def manifest_path(self, version: str) -> Path:
        return self.version_dir(version) / MANIFEST_NAME

    @property
    def gobuild_root(self) -> Path:
        """Where ``gobuild`` keeps its wrapper modules and build logs."""
        return self.root / "gobuild"

    # --- queries ----------------------------------------------------------------------------

    def is_installed(self, version: str) -> bool:
        return self.manifest_path(version).is_file()

    def installed_versions(self) -> list[str]:
        """Normalised versions (``"1.36.3"``) with a manifest, oldest first."""
        if not self.root.is_dir():
            return []
        found = [
            child.name[1:]
            for child in self.root.iterdir()
            if _VERSION_DIR_RE.match(child.name) and (child / MANIFEST_NAME).is_file()
        ]
        return sorted(found, key=catalog.version_key)

    def manifest(self, version: str) -> manifest_mod.Manifest:
        path = self.manifest_path(version)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise errors.BinaryError(
                f"Kubernetes binaries v{catalog.normalise_version(version)} are not installed in {self.root}",
                hint=install_hint(catalog.normalise_version(version)),
            ) from None
        return manifest_mod.Manifest.from_json(text, where=path)

    def require(
        self, version: str, components: Iterable[Component] = CACHED_COMPONENTS
    ) -> dict[Component, Path]:
        """Paths of installed, executable binaries; ``BinaryError`` naming what is missing.

        Cheap (sizes, no hashing): meant for every cluster start. ``verify`` does the hashing.
        """
        wanted = list(components)
        ver = catalog.normalise_version(version)
        if not self.is_installed(ver):
            raise errors.BinaryError(
                f"Kubernetes binaries v{ver} are not installed in {self.root}"
                f" (needed: {', '.join(str(c) for c in wanted)})",
                hint=install_hint(ver),
                version=ver,
            )
        recorded = self.manifest(ver).binaries
        paths: dict[Component, Path] = {}
        missing: list[str] = []
        for component in wanted:
            path = self.path(ver, component)
            if str(component) not in recorded or not os.access(path, os.X_OK):
                missing.append(str(component))
                continue
            size = path.stat().st_size
            if size != recorded[str(component)].size:
                raise errors.ChecksumMismatch(
                    f"{component} in {self.version_dir(ver)} is corrupt: {size} bytes, the manifest says"
                    f" {recorded[str(component)].size}",
                    hint=install_hint(ver).replace("--from-source", "--from-source --force"),
                    file=str(path),
                )
            paths[component] = path
        if missing:
            raise errors.BinaryError(
                f"the v{ver} binary cache in {self.version_dir(ver)} is missing {', '.join(missing)}",
                hint=install_hint(ver),
                version=ver,
                missing=",".join(missing),
            )
        return paths

    def verify(self, version: str) -> manifest_mod.Manifest:
        """Re-hash every binary in the manifest; ``ChecksumMismatch`` naming a corrupt file."""
        ver = catalog.normalise_version(version)
        recorded = self.manifest(ver)
        _check_against(self.version_dir(ver), recorded, installed=True)
        return recorded

    # --- installing and removing ------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, version: str) -> Iterator[None]:
        """Hold the per-version lock; ``Conflict`` if another process holds it."""
        ver = catalog.normalise_version(version)
        self.root.mkdir(parents=True, exist_ok=True)
        lock_path = self.root / f".v{ver}.lock"
        with lock_path.open("a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise errors.Conflict(
                    f"another Pilothouse process is installing or removing v{ver} ({lock_path})",
                    hint="wait for it to finish, then try again",
                ) from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def new_staging_dir(self, version: str) -> Path:
        """A fresh directory next to the version directory (same filesystem, so rename works).

        Call under :meth:`lock`; leftovers of interrupted installs are removed first.
        """
        ver = catalog.normalise_version(version)
        self.root.mkdir(parents=True, exist_ok=True)
        self.clean_stale(ver)
        return Path(tempfile.mkdtemp(prefix=f".staging-v{ver}-", dir=self.root))

    def clean_stale(self, version: str) -> None:
        """Delete staging and trash directories left by interrupted runs (call under lock)."""
        ver = catalog.normalise_version(version)
        for pattern in (f".staging-v{ver}-*", f".trash-v{ver}-*"):
            for leftover in self.root.glob(pattern):
                shutil.rmtree(leftover, ignore_errors=True)

    def install_from_staging(self, version: str, staging_dir: Path, manifest: manifest_mod.Manifest) -> Path:
        """Check ``staging_dir`` against ``manifest``, write the manifest, rename into place.

        Replaces an existing install of the same version (for ``--force``). On any
        failure nothing new is installed; the caller deletes ``staging_dir``.
        """
        ver = catalog.normalise_version(version)
        staging_dir = Path(staging_dir)
        if staging_dir.resolve().parent != self.root.resolve():
            raise ValueError(f"staging directory {staging_dir} must be directly inside {self.root}")
        if manifest.kubernetes != ver:
            raise ValueError(f"manifest is for {manifest.kubernetes}, not {ver}")
        _check_against(staging_dir, manifest, installed=False)
        for name in manifest.binaries:
            binary = staging_dir / name
            binary.chmod(0o755)
            fsync_file(binary)
        manifest_tmp = staging_dir / f".{MANIFEST_NAME}.tmp"
        manifest_tmp.write_text(manifest.to_json())
        fsync_file(manifest_tmp)
        manifest_tmp.rename(staging_dir / MANIFEST_NAME)
        staging_dir.chmod(0o755)
        fsync_dir(staging_dir)

        target = self.version_dir(ver)
        trash: Path | None = None
        if target.exists():
            trash = self.root / f".trash-v{ver}-{uuid.uuid4().hex[:8]}"
            target.rename(trash)
        staging_dir.rename(target)
        fsync_dir(self.root)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return target

    def add_binaries(self, version: str, staging_dir: Path, manifest: manifest_mod.Manifest) -> Path:
        """Add the staged binaries ``manifest`` names that the install lacks (a top-up), in place.

        Existing binaries are never touched, so processes running from this version
        keep their executable path. Each new file is checked, fsynced and renamed in
        (same filesystem); the manifest is replaced last, so until then the install is
        exactly what it was. Call under :meth:`lock`.
        """
        ver = catalog.normalise_version(version)
        target = self.version_dir(ver)
        current = self.manifest(ver)
        if set(current.binaries) - set(manifest.binaries):
            raise ValueError("a top-up manifest must keep every installed binary")
        added = {n: r for n, r in manifest.binaries.items() if n not in current.binaries}
        staged = manifest_mod.Manifest(
            manifest.kubernetes, manifest.source, manifest.installed_at, manifest.pins, added
        )
        _check_against(Path(staging_dir), staged, installed=False)
        for name in added:
            binary = Path(staging_dir) / name
            binary.chmod(0o755)
            fsync_file(binary)
            binary.rename(target / name)
        fsync_dir(target)
        manifest_tmp = target / f".{MANIFEST_NAME}.tmp"
        manifest_tmp.write_text(manifest.to_json())
        fsync_file(manifest_tmp)
        manifest_tmp.rename(target / MANIFEST_NAME)
        fsync_dir(target)
        return target

    def remove(self, version: str) -> None:
        """Delete an installed version (atomically disappears, then is deleted)."""
        ver = catalog.normalise_version(version)
        target = self.version_dir(ver)
        if not target.exists():
            installed = ", ".join(self.installed_versions()) or "none"
            raise errors.NotFound(
                f"Kubernetes binaries v{ver} are not installed in {self.root}",
                hint=f"installed versions: {installed}",
            )
        with self.lock(ver):
            trash = self.root / f".trash-v{ver}-{uuid.uuid4().hex[:8]}"
            target.rename(trash)
            fsync_dir(self.root)
            shutil.rmtree(trash, ignore_errors=True)


def _check_against(directory: Path, manifest: manifest_mod.Manifest, *, installed: bool) -> None:
    state = "installed" if installed else "staged"
    for name, record in sorted(manifest.binaries.items()):
        path = directory / name
        if not path.is_file():
            raise errors.BinaryError(
                f"{name} is missing from the {state} binaries in {directory}",
                hint=f"reinstall with `pilothouse binaries install --version {manifest.kubernetes} --force`",
            )
        got = manifest_mod.sha256_file(path)
        if got != record.sha256:
            raise errors.ChecksumMismatch(
                f"{name} in {directory} is corrupt: expected sha256 {record.sha256}, got {got}",
                hint=f"reinstall with `pilothouse binaries install --version {manifest.kubernetes} --force`",
                file=str(path),
                expected=record.sha256,
                got=got,
            )
