"""Tests for pilothouse.fleet.requests: validation of create and import requests.

Every rejected request is one ``InvalidInput`` whose message names each bad
field, so the CLI and the REST API can show the user what to fix.
"""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse import errors
from pilothouse.fleet import requests

KUBECONFIG = "apiVersion: v1\nkind: Config\n"


def _invalid_create(**fields: Any) -> errors.InvalidInput:
    data: dict[str, Any] = {"name": "ok", **fields}
    with pytest.raises(errors.InvalidInput) as exc:
        requests.parse(requests.CreateLocalCluster, **data)
    assert type(exc.value) is errors.InvalidInput
    assert exc.value.code == "invalid_input"
    assert exc.value.hint
    return exc.value


# ----- accepted ------------------------------------------------------------------------------


def test_create_defaults() -> None:
    request = requests.parse(requests.CreateLocalCluster, name="dev")
    assert request.name == "dev"
    assert request.nodes == 3
    assert request.control_planes == 1
    assert request.version is None
    assert request.api_port is None


@pytest.mark.parametrize("version", ["1.36.3", "v1.36.3", " 1.36.3 "])
def test_create_normalises_a_supported_version(version: str) -> None:
    assert requests.parse(requests.CreateLocalCluster, name="dev", version=version).version == "1.36.3"


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "a"},
        {"name": "a" * 40},
        {"name": "web-1"},
        {"name": "x9-y8"},
        {"name": "ha", "control_planes": 3},
        {"name": "empty", "nodes": 0},
        {"name": "big", "nodes": requests.MAX_NODES},
        {"name": "port", "api_port": 1024},
        {"name": "port", "api_port": 65535},
    ],
)
def test_create_accepts_the_edges(fields: dict[str, Any]) -> None:
    request = requests.parse(requests.CreateLocalCluster, **fields)
    for key, value in fields.items():
        assert getattr(request, key) == value


def test_import_accepts_a_name_and_kubeconfig_text() -> None:
    request = requests.parse(requests.ImportCluster, name="prod", kubeconfig=KUBECONFIG, context="admin")
    assert (request.name, request.kubeconfig, request.context) == ("prod", KUBECONFIG, "admin")


# ----- rejected ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Upper",
        "UPPER",
        "1leading-digit",
        "a" * 41,
        "under_score",
        "",
        "trailing-",
        "-leading",
        "dot.ted",
        "spa ce",
    ],
)
def test_bad_names(name: str) -> None:
    error = _invalid_create(name=name)
    assert error.message.startswith("name: ")
    assert repr(name) in error.message  # shows what was given
    assert "lowercase" in error.hint


@pytest.mark.parametrize("name", ["Bad_Name", "9lives", "b" * 41])
def test_bad_names_on_import(name: str) -> None:
    with pytest.raises(errors.InvalidInput) as exc:
        requests.parse(requests.ImportCluster, name=name, kubeconfig=KUBECONFIG)
    assert exc.value.message.startswith("name: ")


@pytest.mark.parametrize("nodes", [-1, requests.MAX_NODES + 1])
def test_nodes_out_of_range(nodes: int) -> None:
    error = _invalid_create(nodes=nodes)
    assert error.message.startswith("nodes: ")
    assert f"(got {nodes})" in error.message
    assert error.hint == f"nodes is a number from 0 to {requests.MAX_NODES}"


@pytest.mark.parametrize("control_planes", [0, 2, 4])
def test_control_planes_must_be_one_or_three(control_planes: int) -> None:
    error = _invalid_create(control_planes=control_planes)
    assert error.message.startswith("control_planes: ")
    assert "1 or 3" in error.message
    assert error.hint == "control planes are 1, or 3 for HA"


def test_unknown_version() -> None:
    error = _invalid_create(version="1.99.0")
    assert error.message.startswith("version: ")
    assert "1.99.0 is not supported" in error.message
    assert "supported versions: 1.35.4, 1.36.3" in error.message
    assert error.hint == "supported Kubernetes versions: 1.35.4, 1.36.3"  # not a hint about names


@pytest.mark.parametrize("version", ["banana", "1.36", "1.36.3.1", "latest"])
def test_malformed_version(version: str) -> None:
    error = _invalid_create(version=version)
    assert error.message.startswith("version: ")
    assert "malformed Kubernetes version" in error.message
    assert repr(version) in error.message


@pytest.mark.parametrize("port", [0, 80, 1023, 65536])
def test_api_port_out_of_range(port: int) -> None:
    error = _invalid_create(api_port=port)
    assert error.message.startswith("api_port: ")
    assert "1024 to 65535" in error.hint


def test_unknown_field_is_named() -> None:
    error = _invalid_create(nodez=3)
    assert error.message.startswith("nodez: ")


def test_every_bad_field_is_named_in_one_error() -> None:
    error = _invalid_create(name="Bad_Name", nodes=-1, control_planes=2, version="banana")
    for field in ("name: ", "nodes: ", "control_planes: ", "version: "):
        assert field in error.message, field
    for hint in ("cluster names", "nodes is", "control planes", "supported Kubernetes versions"):
        assert hint in error.hint, hint


def test_import_kubeconfig_must_not_be_empty() -> None:
    with pytest.raises(errors.InvalidInput) as exc:
        requests.parse(requests.ImportCluster, name="prod", kubeconfig="")
    assert exc.value.message.startswith("kubeconfig: ")


def test_import_error_never_echoes_the_kubeconfig() -> None:
    secret = "token: s3cr3t-Zq9XvW2pL7"
    with pytest.raises(errors.InvalidInput) as exc:
        requests.parse(requests.ImportCluster, name="prod", kubeconfig=secret + "x" * 1_000_000)
    assert exc.value.message.startswith("kubeconfig: ")
    assert "s3cr3t" not in str(exc.value)
    assert "s3cr3t" not in repr(exc.value.to_dict())


def test_import_context_must_be_text() -> None:
    with pytest.raises(errors.InvalidInput) as exc:
        requests.parse(requests.ImportCluster, name="prod", kubeconfig=KUBECONFIG, context=["a"])
    assert exc.value.message.startswith("context: ")
