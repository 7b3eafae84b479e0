"""Tests for pilothouse.cli.binaries: the ``pilothouse binaries`` commands and their error output."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pilothouse.binaries import catalog, manifest
from pilothouse.binaries.cache import BinaryCache
from pilothouse.cli.binaries import app

VERSION_LINES = {
    "etcd": "etcd Version: 3.6.16",
    "kwok": "kwok version v0.8.0 go1.26.8 (linux/amd64)",
    "kwokctl": "kwokctl version v0.8.0 go1.26.8 (linux/amd64)",
    "etcdctl": "etcdctl version: 3.6.16",
    "etcdutl": "etcdutl version: 3.6.16",
}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BinaryCache:
    monkeypatch.setenv("PILOTHOUSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PILOTHOUSE_CONFIG", str(tmp_path / "absent.yaml"))
    monkeypatch.delenv("PILOTHOUSE_KUBERNETES_VERSION", raising=False)
    return BinaryCache(tmp_path / "cache" / "binaries")


def _install_fake(cache: BinaryCache, version: str = "1.36.3") -> Path:
    staging = cache.new_staging_dir(version)
    records = {}
    for name in catalog.binary_names():
        path = staging / name
        path.write_text(f"#!/bin/sh\necho '{VERSION_LINES.get(name, 'Kubernetes v1.36.3')}'\n")
        path.chmod(0o755)
        records[name] = manifest.describe_file(path, source="source", version="x")
    built = manifest.Manifest(version, "source", "2026-03-01T12:00:00+00:00", {}, records)
    return cache.install_from_staging(version, staging, built)


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_list_empty(cache: BinaryCache) -> None:
    code, out, _ = _run("list")
    assert code == 0
    assert "no Kubernetes binaries installed" in out


def test_list_shows_installed_versions(cache: BinaryCache) -> None:
    _install_fake(cache)
    code, out, _ = _run("list")
    assert code == 0
    assert "v1.36.3" in out
    assert "source" in out
    assert "kube-apiserver" in out


def test_verify_ok(cache: BinaryCache) -> None:
    _install_fake(cache)
    code, out, _ = _run("verify", "--version", "v1.36.3")
    assert code == 0
    assert "v1.36.3: 8 binaries match their checksums" in out


def test_verify_corruption_prints_error_and_hint(cache: BinaryCache) -> None:
    target = _install_fake(cache)
    (target / "kube-apiserver").write_text("#!/bin/sh\necho 'Kubernetes v1.36.3' # changed\n")
    code, out, err = _run("verify", "--version", "1.36.3")
    assert code == 1
    assert err.startswith("error: kube-apiserver in ")
    assert "is corrupt: expected sha256" in err
    assert "\nhint: reinstall with `pilothouse binaries install --version 1.36.3 --force`" in err
    assert "Traceback" not in out + err


def test_verify_defaults_to_the_configured_version(cache: BinaryCache) -> None:
    code, _, err = _run("verify")
    assert code == 1
    assert "error: Kubernetes binaries v1.36.3 are not installed" in err
    assert "hint: run `pilothouse binaries install --version 1.36.3 --from-source`" in err


def test_remove(cache: BinaryCache) -> None:
    _install_fake(cache)
    code, out, _ = _run("remove", "--version", "1.36.3")
    assert code == 0
    assert "removed Kubernetes v1.36.3" in out
    assert cache.installed_versions() == []
    code, _, err = _run("remove", "--version", "1.36.3")
    assert code == 1
    assert "hint: installed versions: none" in err


def test_install_unsupported_version(cache: BinaryCache) -> None:
    code, _, err = _run("install", "--version", "1.30.0")
    assert code == 1
    assert (
        err == "error: Kubernetes 1.30.0 is not supported by this Pilothouse\n"
        "hint: supported versions: 1.35.4, 1.36.3\n"
    )


def test_install_malformed_version(cache: BinaryCache) -> None:
    code, _, err = _run("install", "--version", "latest")
    assert code == 1
    assert err.startswith("error: malformed Kubernetes version 'latest'")


def test_install_already_installed_is_a_noop(cache: BinaryCache) -> None:
    _install_fake(cache)
    code, out, _ = _run("install", "--version", "1.36.3", "--from-source")
    assert code == 0
    assert "already installed" in out


def test_install_from_source_without_go(
    cache: BinaryCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    code, _, err = _run("install", "--version", "1.36.3", "--from-source")
    assert code == 1
    assert "error: building from source needs the Go toolchain, but `go` is not on PATH" in err
    assert "hint: install Go 1.26.0 or newer" in err
    assert cache.installed_versions() == []
