"""Integration tests for pilothouse.binaries downloads against a real local HTTP server.

The server (``http.server`` on 127.0.0.1) serves small shell scripts that print
the versions real binaries print, laid out exactly like dl.k8s.io and the etcd
and kwok GitHub releases, with their published checksum files.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pilothouse import errors
from pilothouse.binaries import catalog, download, installer
from pilothouse.binaries.cache import BinaryCache

PINS = catalog.pins_for("1.36.3")
ARCH = "amd64"
KUBE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def _script(line: str) -> bytes:
    return f"#!/bin/sh\necho '{line}'\n".encode()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ReleaseServer:
    root: Path
    url: str
    requests: list[str] = field(default_factory=list)

    def sources(self, **overrides: Any) -> download.DownloadSources:
        values: dict[str, Any] = {
            "kubernetes_base_url": f"{self.url}/k8s",
            "etcd_base_url": f"{self.url}/etcd/",  # a trailing slash must not matter
            "kwok_base_url": f"{self.url}/kwok",
            "kwok_checksum_file": "SHA256SUMS",
            "arch": ARCH,
            "timeout_seconds": 10.0,
        }
        values.update(overrides)
        return download.DownloadSources(**values)

    def kube_binary(self, name: str) -> Path:
        return self.root / "k8s" / "v1.36.3" / "bin" / "linux" / ARCH / name


def _publish(root: Path) -> dict[str, bytes]:
    """Write the three release layouts; return the binaries by name."""
    binaries: dict[str, bytes] = {name: _script("Kubernetes v1.36.3") for name in KUBE}
    kube_dir = root / "k8s" / "v1.36.3" / "bin" / "linux" / ARCH
    kube_dir.mkdir(parents=True)
    for name in KUBE:
        (kube_dir / name).write_bytes(binaries[name])
        # dl.k8s.io publishes a bare digest; some mirrors append the file name
        suffix = f"  {name}" if name == "kube-apiserver" else ""
        (kube_dir / f"{name}.sha256").write_text(_sha(binaries[name]) + suffix + "\n")

    binaries["etcd"] = _script("etcd Version: 3.6.16")
    binaries["etcdctl"] = _script("etcdctl version: 3.6.16\nAPI version: 3.6")
    binaries["etcdutl"] = _script("etcdutl version: 3.6.16\nAPI version: 3.6")
    stem = f"etcd-v3.6.16-linux-{ARCH}"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member, data in (
            (f"{stem}/etcd", binaries["etcd"]),
            (f"{stem}/etcdctl", binaries["etcdctl"]),
            (f"{stem}/etcdutl", binaries["etcdutl"]),
            (f"{stem}/README.md", b"r"),
        ):
            info = tarfile.TarInfo(member)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    etcd_dir = root / "etcd" / "v3.6.16"
    etcd_dir.mkdir(parents=True)
    (etcd_dir / f"{stem}.tar.gz").write_bytes(buffer.getvalue())
    (etcd_dir / "SHA256SUMS").write_text(
        f"{'0' * 64}  etcd-v3.6.16-darwin-arm64.zip\n{_sha(buffer.getvalue())}  {stem}.tar.gz\n"
    )

    kwok_dir = root / "kwok" / "v0.8.0"
    kwok_dir.mkdir(parents=True)
    sums = []
    for name in ("kwok", "kwokctl"):
        binaries[name] = _script(f"{name} version v0.8.0 go1.26.8 (linux/{ARCH})")
        (kwok_dir / f"{name}-linux-{ARCH}").write_bytes(binaries[name])
        sums.append(f"{_sha(binaries[name])} *{name}-linux-{ARCH}")
    (kwok_dir / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return binaries


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ReleaseServer]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    root = tmp_path / "www"
    _publish(root)
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            requests.append(self.path)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield ReleaseServer(root=root, url=f"http://127.0.0.1:{httpd.server_address[1]}", requests=requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def cache(tmp_path: Path) -> BinaryCache:
    return BinaryCache(tmp_path / "cache" / "binaries")


def _leftovers(cache: BinaryCache) -> list[str]:
    return sorted(p.name for p in cache.root.iterdir() if p.name.startswith((".staging", ".trash")))


def test_install_downloads_verifies_and_writes_manifest(server: ReleaseServer, cache: BinaryCache) -> None:
    seen: dict[str, tuple[int, int | None]] = {}
    phases: list[str] = []
    path = installer.install(
        "v1.36.3",
        cache=cache,
        source="download",
        sources=server.sources(),
        progress=lambda name, done, total: seen.__setitem__(name, (done, total)),
        phase=lambda p, d: phases.append(f"{p}: {d}"),
    )
    assert path == cache.root / "v1.36.3"
    assert cache.installed_versions() == ["1.36.3"]
    recorded = cache.verify("1.36.3")
    assert set(recorded.binaries) == set(catalog.binary_names())
    assert recorded.source == "download"
    assert recorded.binaries["etcd"].sha256 == _sha(_script("etcd Version: 3.6.16"))
    assert recorded.binaries["etcd"].version == "3.6.16"
    assert recorded.binaries["kwokctl"].origin == f"{server.url}/kwok/v0.8.0/kwokctl-linux-amd64"
    assert recorded.binaries["kube-scheduler"].origin.endswith("/k8s/v1.36.3/bin/linux/amd64/kube-scheduler")
    assert recorded.pins["etcd"] == "3.6.16"
    assert recorded.extra == {"arch": "amd64"}
    assert sorted(p.name for p in path.iterdir()) == sorted([*catalog.binary_names(), "manifest.json"])
    # progress: one entry per downloaded file, complete, with the size the server announced
    assert set(seen) == {*KUBE, "etcd-v3.6.16-linux-amd64.tar.gz", "kwok-linux-amd64", "kwokctl-linux-amd64"}
    assert all(done == total and total for done, total in seen.values())
    assert "verifying: kube-apiserver --version" in phases
    assert set(cache.require("1.36.3")) == set(catalog.binary_names(with_kwokctl=False))
    assert _leftovers(cache) == []


def test_rerun_after_success_is_a_noop(server: ReleaseServer, cache: BinaryCache) -> None:
    first = installer.install("1.36.3", cache=cache, source="download", sources=server.sources())
    manifest_before = (first / "manifest.json").read_text()
    server.requests.clear()
    again = installer.install("1.36.3", cache=cache, source="download", sources=server.sources())
    assert again == first
    assert server.requests == []
    assert (first / "manifest.json").read_text() == manifest_before


def test_force_reinstalls(server: ReleaseServer, cache: BinaryCache) -> None:
    installer.install("1.36.3", cache=cache, source="download", sources=server.sources())
    server.requests.clear()
    installer.install("1.36.3", cache=cache, source="download", sources=server.sources(), force=True)
    assert any(path.endswith("/kube-apiserver") for path in server.requests)
    assert cache.verify("1.36.3").source == "download"
    assert _leftovers(cache) == []


def test_corrupt_install_is_replaced(server: ReleaseServer, cache: BinaryCache) -> None:
    path = installer.install("1.36.3", cache=cache, source="download", sources=server.sources())
    (path / "kwok").write_text("garbage")
    installer.install("1.36.3", cache=cache, source="download", sources=server.sources())
    cache.verify("1.36.3")


@pytest.mark.parametrize(
    ("tampered", "shown"),
    [
        ("k8s/v1.36.3/bin/linux/amd64/kube-scheduler", "kube-scheduler"),
        ("etcd/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz", "etcd-v3.6.16-linux-amd64.tar.gz"),
        ("kwok/v0.8.0/kwokctl-linux-amd64", "kwokctl-linux-amd64"),
    ],
)
def test_tampered_file_raises_checksum_mismatch_and_installs_nothing(
    server: ReleaseServer, cache: BinaryCache, tampered: str, shown: str
) -> None:
    target = server.root / tampered
    original = target.read_bytes()
    target.write_bytes(original + b"# tampered\n")
    with pytest.raises(errors.ChecksumMismatch) as info:
        installer.install("1.36.3", cache=cache, source="download", sources=server.sources())
    message = info.value.message
    assert message.startswith(shown)
    assert f"expected sha256 {_sha(original)}, got {_sha(original + b'# tampered' + bytes([10]))}" in message
    assert "nothing was installed" in message
    assert not (cache.root / "v1.36.3").exists()
    assert cache.installed_versions() == []
    assert _leftovers(cache) == []


def test_failed_reinstall_keeps_the_existing_install(server: ReleaseServer, cache: BinaryCache) -> None:
    installer.install("1.36.3", cache=cache, source="download", sources=server.sources())
    before = cache.manifest("1.36.3")
    binary = server.kube_binary("kube-apiserver")
    binary.write_bytes(binary.read_bytes() + b"#")
    with pytest.raises(errors.ChecksumMismatch):
        installer.install("1.36.3", cache=cache, source="download", sources=server.sources(), force=True)
    assert cache.verify("1.36.3") == before
    assert _leftovers(cache) == []


def test_missing_file_is_binary_error_hinting_from_source(server: ReleaseServer, cache: BinaryCache) -> None:
    (server.root / "kwok" / "v0.8.0" / "kwok-linux-amd64").unlink()
    with pytest.raises(errors.BinaryError) as info:
        installer.install("1.36.3", cache=cache, source="download", sources=server.sources())
    assert not isinstance(info.value, errors.ChecksumMismatch)
    assert "HTTP 404" in info.value.message
    assert "kwok-linux-amd64" in info.value.message
    assert "--from-source" in info.value.hint
    assert cache.installed_versions() == []
    assert _leftovers(cache) == []


def test_missing_checksum_file_is_binary_error(server: ReleaseServer, cache: BinaryCache) -> None:
    (server.root / "etcd" / "v3.6.16" / "SHA256SUMS").unlink()
    with pytest.raises(errors.BinaryError, match=r"SHA256SUMS failed: HTTP 404"):
        installer.install("1.36.3", cache=cache, source="download", sources=server.sources())
    assert cache.installed_versions() == []


def test_unreachable_server_is_binary_error(server: ReleaseServer, cache: BinaryCache) -> None:
    sources = server.sources(kubernetes_base_url="http://127.0.0.1:9/release")  # discard port: refused
    with pytest.raises(errors.BinaryError) as info:
        installer.install("1.36.3", cache=cache, source="download", sources=sources)
    assert "ConnectError" in info.value.message
    assert "--from-source" in info.value.hint


def test_kwok_without_published_checksums_is_still_version_checked(
    server: ReleaseServer, cache: BinaryCache
) -> None:
    (server.root / "kwok" / "v0.8.0" / "SHA256SUMS").unlink()
    (server.root / "kwok" / "v0.8.0" / "kwok-linux-amd64").write_bytes(_script("kwok version v0.7.0 go1.24"))
    sources = server.sources(kwok_checksum_file=None)
    with pytest.raises(errors.BinaryError, match=r"kwok reports version 0\.7\.0, expected 0\.8\.0"):
        installer.install("1.36.3", cache=cache, source="download", sources=sources)
    assert cache.installed_versions() == []
    assert _leftovers(cache) == []


def test_without_kwokctl(server: ReleaseServer, cache: BinaryCache) -> None:
    installer.install("1.36.3", cache=cache, source="download", sources=server.sources(), with_kwokctl=False)
    assert "kwokctl" not in cache.manifest("1.36.3").binaries
    assert not any("kwokctl" in path for path in server.requests if "SHA256SUMS" not in path)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    pilothouse = str(Path(sys.executable).with_name("pilothouse"))
    return subprocess.run(
        [pilothouse, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_cli_install_downloads_from_configured_release_urls(server: ReleaseServer, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PILOTHOUSE_CACHE_DIR": str(tmp_path / "cli-cache"),
        "PILOTHOUSE_CONFIG_DIR": str(tmp_path / "cli-config"),
        "PILOTHOUSE_DATA_DIR": str(tmp_path / "cli-data"),
        "PILOTHOUSE_RELEASE_BASE_URL": f"{server.url}/k8s",
        "PILOTHOUSE_ETCD_RELEASE_BASE_URL": f"{server.url}/etcd",
        "PILOTHOUSE_KWOK_RELEASE_BASE_URL": f"{server.url}/kwok",
        "PILOTHOUSE_KWOK_CHECKSUM_FILE": "SHA256SUMS",
    }
    installed = _cli(env, "binaries", "install", "--version", "1.36.3")
    assert installed.returncode == 0, installed.stderr
    manifest = tmp_path / "cli-cache" / "binaries" / "v1.36.3" / "manifest.json"
    assert manifest.is_file()
    assert any(path.endswith("/kube-apiserver") for path in server.requests)

    # A tampered release is refused and the installed version is left alone.
    tampered = server.kube_binary("kube-scheduler")
    tampered.write_bytes(tampered.read_bytes() + b"# tampered\n")
    before = manifest.read_bytes()
    forced = _cli(env, "binaries", "install", "--version", "1.36.3", "--force")
    assert forced.returncode == 1
    assert "kube-scheduler" in forced.stderr
    assert "Traceback" not in forced.stderr
    assert manifest.read_bytes() == before
