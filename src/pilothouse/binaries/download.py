"""Official release downloads, each checked against the digest its publisher put next to it.

Owns turning :class:`catalog.ReleasePins` into URLs (:func:`plan_downloads`, pure)
and fetching them into a staging directory (:func:`fetch_release`). httpx does
the HTTP (streaming, redirects); ``hashlib`` hashes while the bytes arrive and
``tarfile`` unpacks etcd.

Where each binary comes from (every base URL is configurable in :class:`DownloadSources`):

- kube-apiserver, kube-controller-manager, kube-scheduler:
  ``{kubernetes}/v{ver}/bin/linux/{arch}/{name}``, digest in the sibling
  ``{name}.sha256`` (a bare hex digest, sometimes followed by the file name).
- etcd, etcdctl, etcdutl: ``{etcd}/v{etcd}/etcd-v{etcd}-linux-{arch}.tar.gz``
  (fetched once), digest listed in ``SHA256SUMS`` in the same release folder;
  the binaries are ``etcd-v{etcd}-linux-{arch}/{name}`` inside the tarball.
- kwok, kwokctl: ``{kwok}/v{kwok}/{name}-linux-{arch}``. kwok's release script
  (``hack/releases.sh``) uploads bare binaries and no checksum file, so these are
  protected by TLS only unless ``kwok_checksum_file`` names a sums file to use
  (tests and mirrors do). They are still version-probed after download.

Every failure leaves the staging directory for the caller to delete: nothing
here writes into the cache itself.
"""

from __future__ import annotations

import hashlib
import platform
import re
import shutil
import tarfile
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pilothouse import errors
from pilothouse.binaries import catalog
from pilothouse.settings import Settings
from pilothouse.vocabulary import Component

#: ``(file name, bytes done, total bytes or None)``; called as bytes arrive.
ProgressCallback = Callable[[str, int, int | None], None]

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_CHUNK = 256 * 1024
_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def host_arch() -> str:
    """The release architecture name of this machine (``amd64``, ``arm64``)."""
    machine = platform.machine().lower()
    return _ARCHES.get(machine, machine)


@dataclass(frozen=True)
class DownloadSources:
    """Base URLs of the three publishers; tests point all of them at one local server."""

    kubernetes_base_url: str = "https://dl.k8s.io/release"
    etcd_base_url: str = "https://github.com/etcd-io/etcd/releases/download"
    kwok_base_url: str = "https://github.com/kubernetes-sigs/kwok/releases/download"
    kwok_checksum_file: str | None = None
    arch: str = field(default_factory=host_arch)
    timeout_seconds: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DownloadSources:
        return cls(
            kubernetes_base_url=settings.release_base_url,
            etcd_base_url=settings.etcd_release_base_url,
            kwok_base_url=settings.kwok_release_base_url,
            kwok_checksum_file=settings.kwok_checksum_file,
        )


@dataclass(frozen=True)
class Checksum:
    """Where a file's expected digest is published."""

    url: str
    entry: str | None = None  # name to look up in a sums file; None: the file holds one digest


@dataclass(frozen=True)
class PlannedBinary:
    """One binary to obtain: fetch ``url``, check it, take ``member`` out of it if an archive."""

    name: str
    version: str
    release: str  # the Kubernetes version this binary is installed for
    url: str
    checksum: Checksum | None
    member: str | None = None

    @property
    def download_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def plan_downloads(
    pins: catalog.ReleasePins,
    sources: DownloadSources,
    *,
    with_kwokctl: bool = True,
    only: Collection[str] | None = None,
) -> list[PlannedBinary]:
    """The URLs and digests for every binary of a release, or of the ``only`` ones (pure)."""
    arch = sources.arch
    plan: list[PlannedBinary] = []
    for component in (Component.KUBE_APISERVER, Component.KUBE_CONTROLLER_MANAGER, Component.KUBE_SCHEDULER):
        url = f"{_strip(sources.kubernetes_base_url)}/v{pins.kubernetes}/bin/linux/{arch}/{component}"
        plan.append(
            PlannedBinary(
                name=str(component),
                version=pins.kubernetes,
                release=pins.kubernetes,
                url=url,
                checksum=Checksum(f"{url}.sha256"),
            )
        )

    etcd_folder = f"{_strip(sources.etcd_base_url)}/v{pins.etcd}"
    etcd_stem = f"etcd-v{pins.etcd}-linux-{arch}"
    for etcd_binary in catalog.ETCD_MODULE_BINARIES:
        plan.append(
            PlannedBinary(
                name=str(etcd_binary),
                version=pins.etcd,
                release=pins.kubernetes,
                url=f"{etcd_folder}/{etcd_stem}.tar.gz",
                checksum=Checksum(f"{etcd_folder}/SHA256SUMS", entry=f"{etcd_stem}.tar.gz"),
                member=f"{etcd_stem}/{etcd_binary}",
            )
        )

    kwok_folder = f"{_strip(sources.kwok_base_url)}/v{pins.kwok}"
    kwok_names = [str(Component.KWOK), *([catalog.KWOKCTL] if with_kwokctl else [])]
    for name in kwok_names:
        asset = f"{name}-linux-{arch}"
        checksum = (
            Checksum(f"{kwok_folder}/{sources.kwok_checksum_file}", entry=asset)
            if sources.kwok_checksum_file
            else None
        )
        plan.append(
            PlannedBinary(
                name=name,
                version=pins.kwok,
                release=pins.kubernetes,
                url=f"{kwok_folder}/{asset}",
                checksum=checksum,
            )
        )
    return [item for item in plan if only is None or item.name in only]


def parse_checksum_file(text: str, entry: str | None, *, source: str) -> str:
    """The hex digest for ``entry`` in a ``sha256sum``-style file (or its only digest)."""
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        digest = parts[0]
        if entry is None:
            if _HEX64.match(digest):
                return digest.lower()
            break
        if len(parts) >= 2 and _HEX64.match(digest):
            listed = parts[1].lstrip("*")
            if listed.removeprefix("./") == entry or listed.rsplit("/", 1)[-1] == entry:
                return digest.lower()
    wanted = f"an entry for {entry}" if entry else "a sha256 digest"
    raise errors.BinaryError(
        f"the checksum file {source} has no {wanted}; nothing was installed",
        hint="check the release URLs, or build from source with `--from-source`",
    )


def fetch_release(
    plan: list[PlannedBinary],
    staging_dir: Path,
    *,
    sources: DownloadSources,
    progress: ProgressCallback | None = None,
    client: httpx.Client | None = None,
) -> dict[str, str]:
    """Download, check and unpack every planned binary into ``staging_dir``.

    Returns ``{binary name: origin URL}``. Raises ``ChecksumMismatch`` for a
    digest mismatch and ``BinaryError`` for network and HTTP failures.
    """
    downloads = staging_dir / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    own_client = client is None
    http = client or httpx.Client(follow_redirects=True, timeout=sources.timeout_seconds)
    try:
        sums_cache: dict[str, str] = {}
        origins: dict[str, str] = {}
        archives: dict[str, Path] = {}  # url → checked archive, so a tarball is fetched once
        for item in plan:
            target = staging_dir / item.name
            if item.member is not None and item.url in archives:
                _extract_member(archives[item.url], item.member, target)
                target.chmod(0o755)
                origins[item.name] = item.url
                continue
            expected = None
            if item.checksum is not None:
                if item.checksum.url not in sums_cache:
                    sums_cache[item.checksum.url] = _get_text(http, item.checksum.url, item.release)
                expected = parse_checksum_file(
                    sums_cache[item.checksum.url], item.checksum.entry, source=item.checksum.url
                )
            artifact = downloads / item.download_name
            got = _stream_to_file(
                http, item.url, artifact, name=item.download_name, release=item.release, progress=progress
            )
            if expected is not None and got != expected:
                raise errors.ChecksumMismatch(
                    f"{item.download_name} downloaded from {item.url} does not match its published"
                    f" checksum: expected sha256 {expected}, got {got}; nothing was installed",
                    hint=f"retry; if it persists, the mirror is serving a different file — or build "
                    f"with `pilothouse binaries install --version {item.release} --from-source`",
                    file=item.download_name,
                    expected=expected,
                    got=got,
                )
            if item.member is not None:
                archives[item.url] = artifact
                _extract_member(artifact, item.member, target)
            else:
                artifact.rename(target)
            target.chmod(0o755)
            origins[item.name] = item.url
        return origins
    finally:
        if own_client:
            http.close()
        shutil.rmtree(downloads, ignore_errors=True)


def _strip(url: str) -> str:
    return url.rstrip("/")


def _network_error(url: str, detail: str, release: str) -> errors.BinaryError:
    return errors.BinaryError(
        f"downloading {url} failed: {detail}; nothing was installed",
        hint="check the network and the release base URL, or build the binaries locally with "
        f"`pilothouse binaries install --version {release} --from-source`",
        url=url,
    )


def _get_text(http: httpx.Client, url: str, release: str) -> str:
    try:
        response = http.get(url)
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        raise _network_error(url, f"HTTP {exc.response.status_code}", release) from exc
    except httpx.HTTPError as exc:
        raise _network_error(url, f"{type(exc).__name__}: {exc}", release) from exc
    return response.text


def _stream_to_file(
    http: httpx.Client,
    url: str,
    target: Path,
    *,
    name: str,
    release: str,
    progress: ProgressCallback | None,
) -> str:
    digest = hashlib.sha256()
    done = 0
    try:
        with http.stream("GET", url) as response:
            response.raise_for_status()
            length = response.headers.get("content-length")
            encoded = "content-encoding" in response.headers  # length counts encoded bytes
            total = int(length) if length and length.isdigit() and not encoded else None
            if progress:
                progress(name, 0, total)
            with target.open("wb") as fh:
                for chunk in response.iter_bytes(_CHUNK):
                    fh.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(name, done, total)
    except httpx.HTTPStatusError as exc:
        raise _network_error(url, f"HTTP {exc.response.status_code}", release) from exc
    except httpx.HTTPError as exc:
        raise _network_error(url, f"{type(exc).__name__}: {exc}", release) from exc
    if total is not None and done != total:
        raise _network_error(url, f"received {done} of {total} bytes", release)
    return digest.hexdigest()


def _extract_member(archive: Path, member: str, target: Path) -> None:
    """Copy one regular file out of a .tar.gz (never ``extractall``: no path traversal)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            info = tar.getmember(member)
            source = tar.extractfile(info) if info.isfile() else None
            if source is None:
                raise KeyError(member)
            with source, target.open("wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
    except KeyError:
        raise errors.BinaryError(
            f"{archive.name} does not contain {member}; nothing was installed",
            hint="the release layout changed; build with `--from-source`",
        ) from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise errors.BinaryError(
            f"{archive.name} is not a readable .tar.gz ({exc}); nothing was installed",
            hint="retry, or build with `--from-source`",
        ) from exc
