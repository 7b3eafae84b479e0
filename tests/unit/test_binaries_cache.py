"""Tests for pilothouse.binaries.cache and .manifest: layout, atomic installs, verification."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pilothouse import errors
from pilothouse.binaries import catalog, manifest
from pilothouse.binaries.cache import BinaryCache
from pilothouse.vocabulary import CACHED_COMPONENTS, Component

NAMES = catalog.binary_names()


def _stage(
    cache: BinaryCache, version: str, names: tuple[str, ...] = NAMES
) -> tuple[Path, manifest.Manifest]:
    staging = cache.new_staging_dir(version)
    records = {}
    for name in names:
        path = staging / name
        path.write_text(f"#!/bin/sh\necho {name}\n")
        records[name] = manifest.describe_file(
            path, source="download", version="x", origin=f"http://x/{name}"
        )
    built = manifest.Manifest(
        kubernetes=catalog.normalise_version(version),
        source="download",
        installed_at="2026-03-01T12:00:00+00:00",
        pins=catalog.pins_for("1.36.3").as_dict(),
        binaries=records,
    )
    return staging, built


def _install(cache: BinaryCache, version: str = "1.36.3", names: tuple[str, ...] = NAMES) -> Path:
    staging, built = _stage(cache, version, names)
    return cache.install_from_staging(version, staging, built)


@pytest.fixture
def cache(tmp_path: Path) -> BinaryCache:
    return BinaryCache(tmp_path / "binaries")


def test_layout(cache: BinaryCache) -> None:
    assert cache.version_dir("v1.36.3") == cache.root / "v1.36.3"
    assert cache.path("1.36.3", Component.ETCD) == cache.root / "v1.36.3" / "etcd"
    assert cache.path("1.36.3", "kwokctl") == cache.root / "v1.36.3" / "kwokctl"
    assert cache.gobuild_root == cache.root / "gobuild"
    assert cache.installed_versions() == []


def test_install_from_staging_is_a_rename_and_writes_the_manifest(cache: BinaryCache) -> None:
    staging, built = _stage(cache, "1.36.3")
    target = cache.install_from_staging("v1.36.3", staging, built)
    assert target == cache.version_dir("1.36.3")
    assert not staging.exists()
    assert cache.installed_versions() == ["1.36.3"]
    body = json.loads((target / "manifest.json").read_text())
    assert set(body["binaries"]) == set(NAMES)
    assert body["binaries"]["etcd"]["sha256"] == manifest.sha256_file(target / "etcd")
    assert body["binaries"]["etcd"]["source"] == "download"
    assert body["pins"]["etcd"] == "3.6.16"
    assert all(os.access(target / name, os.X_OK) for name in NAMES)
    assert cache.manifest("1.36.3") == built


def test_several_versions_side_by_side_sorted(cache: BinaryCache) -> None:
    for version in ("1.36.3", "1.9.0", "1.10.1"):
        _install(cache, version)
    assert cache.installed_versions() == ["1.9.0", "1.10.1", "1.36.3"]


def test_staging_and_half_written_dirs_do_not_count_as_installed(cache: BinaryCache) -> None:
    cache.new_staging_dir("1.36.3")
    (cache.root / "v1.35.0").mkdir()  # no manifest: an interrupted copy by hand
    (cache.root / "v1.35.0" / "etcd").write_text("x")
    assert cache.installed_versions() == []
    assert not cache.is_installed("1.35.0")


def test_new_staging_dir_cleans_leftovers_of_the_same_version(cache: BinaryCache) -> None:
    old = cache.new_staging_dir("1.36.3")
    other = cache.new_staging_dir("1.9.0")
    fresh = cache.new_staging_dir("1.36.3")
    assert not old.exists()
    assert other.exists()
    assert fresh.parent == cache.root


def test_staging_content_must_match_manifest(cache: BinaryCache) -> None:
    staging, built = _stage(cache, "1.36.3")
    (staging / "kube-scheduler").write_text("tampered")
    with pytest.raises(errors.ChecksumMismatch, match="kube-scheduler"):
        cache.install_from_staging("1.36.3", staging, built)
    assert not cache.version_dir("1.36.3").exists()
    assert cache.installed_versions() == []


def test_staging_outside_root_is_refused(cache: BinaryCache, tmp_path: Path) -> None:
    _, built = _stage(cache, "1.36.3")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(ValueError, match="must be directly inside"):
        cache.install_from_staging("1.36.3", elsewhere, built)


def test_reinstall_replaces_atomically(cache: BinaryCache) -> None:
    _install(cache)
    staging, built = _stage(cache, "1.36.3", names=NAMES[:-1])
    cache.install_from_staging("1.36.3", staging, built)
    assert set(cache.manifest("1.36.3").binaries) == set(NAMES[:-1])
    assert not (cache.version_dir("1.36.3") / "kwokctl").exists()
    assert [p.name for p in cache.root.iterdir() if p.name.startswith(".trash")] == []


def test_verify_passes_then_detects_corruption(cache: BinaryCache) -> None:
    target = _install(cache)
    assert cache.verify("1.36.3").kubernetes == "1.36.3"
    (target / "kube-apiserver").write_text("#!/bin/sh\necho evil\n")
    with pytest.raises(errors.ChecksumMismatch) as info:
        cache.verify("v1.36.3")
    assert "kube-apiserver" in info.value.message
    assert "expected sha256" in info.value.message
    assert "--force" in info.value.hint


def test_verify_missing_file(cache: BinaryCache) -> None:
    target = _install(cache)
    (target / "etcd").unlink()
    with pytest.raises(errors.BinaryError, match="etcd is missing"):
        cache.verify("1.36.3")


def test_require_returns_paths(cache: BinaryCache) -> None:
    _install(cache)
    paths = cache.require("v1.36.3")
    assert set(paths) == set(CACHED_COMPONENTS)
    assert paths[Component.KWOK] == cache.root / "v1.36.3" / "kwok"


def test_require_not_installed_hints_install_from_source(cache: BinaryCache) -> None:
    with pytest.raises(errors.BinaryError) as info:
        cache.require("1.36.3", [Component.ETCD])
    assert "v1.36.3 are not installed" in info.value.message
    assert "etcd" in info.value.message
    assert info.value.hint == "run `pilothouse binaries install --version 1.36.3 --from-source`"


def test_require_names_the_missing_component(cache: BinaryCache) -> None:
    target = _install(cache)
    (target / "kube-scheduler").unlink()
    with pytest.raises(errors.BinaryError) as info:
        cache.require("1.36.3")
    assert info.value.message.endswith("is missing kube-scheduler")
    assert "--from-source" in info.value.hint


def test_require_component_absent_from_manifest(cache: BinaryCache) -> None:
    _install(cache, names=tuple(n for n in NAMES if n != "kwok"))
    with pytest.raises(errors.BinaryError, match="missing kwok"):
        cache.require("1.36.3", [Component.ETCD, Component.KWOK])
    assert set(cache.require("1.36.3", [Component.ETCD])) == {Component.ETCD}


def test_unsupported_version_hint_lists_supported(cache: BinaryCache) -> None:
    with pytest.raises(errors.BinaryError) as info:
        cache.require("1.20.0")
    assert "1.36.3" in info.value.hint


def test_remove(cache: BinaryCache) -> None:
    _install(cache)
    _install(cache, "1.10.1")
    cache.remove("v1.36.3")
    assert cache.installed_versions() == ["1.10.1"]
    assert not cache.version_dir("1.36.3").exists()
    with pytest.raises(errors.NotFound) as info:
        cache.remove("1.36.3")
    assert "1.10.1" in info.value.hint


def test_lock_excludes_a_second_holder(cache: BinaryCache) -> None:
    with cache.lock("1.36.3"), pytest.raises(errors.Conflict), cache.lock("1.36.3"):
        pass
    with cache.lock("1.36.3"), cache.lock("1.10.1"):
        pass


def test_unreadable_manifest_is_a_binary_error(cache: BinaryCache) -> None:
    target = _install(cache)
    (target / "manifest.json").write_text("{not json")
    with pytest.raises(errors.BinaryError, match="unreadable"):
        cache.manifest("1.36.3")


def test_manifest_round_trip() -> None:
    record = manifest.BinaryRecord("etcd", "ab" * 32, 12, "source", "3.6.16", "go.etcd.io/etcd/server/v3")
    original = manifest.Manifest("1.36.3", "source", "t", {"etcd": "3.6.16"}, {"etcd": record}, {"go": "1"})
    assert manifest.Manifest.from_json(original.to_json()) == original
    assert original.total_size == 12


def test_require_catches_a_truncated_binary_without_hashing(cache: BinaryCache) -> None:
    target = _install(cache)
    binary = target / "kube-apiserver"
    binary.write_bytes(binary.read_bytes()[:-1])
    with pytest.raises(errors.ChecksumMismatch, match="kube-apiserver") as info:
        cache.require("1.36.3")
    assert "--force" in info.value.hint
