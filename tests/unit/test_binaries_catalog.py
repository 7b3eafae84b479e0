"""Tests for pilothouse.binaries.catalog: supported versions and their pins."""

from __future__ import annotations

import pytest

from pilothouse import errors
from pilothouse.binaries import catalog
from pilothouse.vocabulary import CACHED_COMPONENTS, Component


@pytest.mark.parametrize(
    ("given", "expected"),
    [("1.36.3", "1.36.3"), ("v1.36.3", "1.36.3"), (" v1.36.3\n", "1.36.3"), ("1.9.10", "1.9.10")],
)
def test_normalise_version_accepts_with_or_without_v(given: str, expected: str) -> None:
    assert catalog.normalise_version(given) == expected


@pytest.mark.parametrize(
    "bad", ["", "1.36", "v1", "1.36.3.1", "1.36.x", "vv1.36.3", "1.36.3-rc.0", "01.36.3"]
)
def test_normalise_version_rejects_malformed(bad: str) -> None:
    with pytest.raises(errors.InvalidInput, match="malformed Kubernetes version") as info:
        catalog.normalise_version(bad)
    assert "1.36.3" in info.value.hint


def test_pins_for_1_36_3() -> None:
    pins = catalog.pins_for("v1.36.3")
    assert pins == catalog.pins_for("1.36.3")
    assert (pins.kubernetes, pins.staging, pins.etcd, pins.kwok) == ("1.36.3", "v0.36.3", "3.6.16", "0.8.0")
    assert (pins.go_directive, pins.godebug) == ("1.26.0", "default=go1.26")
    assert (pins.tag, pins.major, pins.minor) == ("v1.36.3", "1", "36")
    assert "k8s.io/client-go" in pins.staging_modules
    assert list(pins.staging_modules) == sorted(pins.staging_modules)


def test_pins_for_1_35_4() -> None:
    pins = catalog.pins_for("v1.35.4")
    assert (pins.kubernetes, pins.staging, pins.etcd, pins.kwok) == ("1.35.4", "v0.35.4", "3.6.16", "0.8.0")
    assert (pins.go_directive, pins.godebug) == ("1.25.0", "default=go1.25")
    assert (pins.tag, pins.major, pins.minor, pins.kubernetes_minor) == ("v1.35.4", "1", "35", "1.35")
    assert pins.kwok_kubernetes == "1.36"  # no kwok tag targets 1.35
    # 1.35.4's go.mod lists 31 staging modules: 1.36 added cri-streaming and streaming
    assert len(pins.staging_modules) == 31
    assert set(catalog.pins_for("1.36.3").staging_modules) - set(pins.staging_modules) == {
        "k8s.io/cri-streaming",
        "k8s.io/streaming",
    }


def test_both_minors_are_supported_side_by_side() -> None:
    assert catalog.supported_versions() == ["1.35.4", "1.36.3"]
    assert catalog.pins_for("1.35.4").tag != catalog.pins_for("1.36.3").tag  # one cache directory each


def test_every_supported_version_pairs_staging_with_kubernetes() -> None:
    for version, pins in catalog.SUPPORTED.items():
        assert pins.kubernetes == version
        _, minor, patch = version.split(".")
        assert pins.staging == f"v0.{minor}.{patch}"
        assert list(pins.staging_modules) == sorted(set(pins.staging_modules))
        assert pins.kwok_kubernetes.count(".") == 1
        assert pins.as_dict()["kwok_kubernetes"] == pins.kwok_kubernetes


def test_unknown_version_names_supported_ones() -> None:
    with pytest.raises(errors.InvalidInput) as info:
        catalog.pins_for("1.30.0")
    assert "1.30.0 is not supported" in info.value.message
    assert info.value.hint == f"supported versions: {', '.join(catalog.supported_versions())}"
    assert "1.36.3" in info.value.hint


def test_version_of_each_binary() -> None:
    pins = catalog.pins_for("1.36.3")
    assert pins.version_of(Component.ETCD) == "3.6.16"
    assert pins.version_of(Component.KWOK) == "0.8.0"
    assert pins.version_of(catalog.KWOKCTL) == "0.8.0"
    assert pins.version_of(Component.KUBE_APISERVER) == "1.36.3"


def test_binary_names() -> None:
    assert catalog.binary_names(with_kwokctl=False) == tuple(str(c) for c in CACHED_COMPONENTS)
    assert catalog.binary_names() == (*(str(c) for c in CACHED_COMPONENTS), "kwokctl")


def test_version_key_sorts_numerically() -> None:
    assert sorted(["1.10.0", "1.9.2", "v1.36.3"], key=catalog.version_key) == ["1.9.2", "1.10.0", "v1.36.3"]
