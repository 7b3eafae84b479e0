"""Tests for pilothouse.kube.credentials: parsing kubeconfigs into ``ClusterCredentials``.

Pure: every kubeconfig is plain data built here (file references use ``tmp_path``).
Each malformed case must be a ``KubeconfigInvalid`` with a hint, and no message,
hint or repr may ever carry the token or any key material.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilothouse import errors
from pilothouse.kube.credentials import ClusterCredentials, load_kubeconfig_file, parse_kubeconfig
from pilothouse.providers.local import pki

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SERVER = "https://127.0.0.1:6443"
TOKEN = "s3cr3t-token-Zq9XvW2pL7mN4kR8"  # a marker that must never leak

_CA = pki.create_ca("unit-ca", now=NOW)
_CLIENT = pki.issue_certificate(_CA, common_name="unit-admin", client=True, now=NOW)
CA_PEM = _CA.cert_pem()
CERT_PEM = _CLIENT.cert_pem()
KEY_PEM = _CLIENT.key_pem()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(
    *, user: dict[str, Any] | None = None, cluster: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A valid two-context kubeconfig: ``main`` (current) and ``other``."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "main-cluster",
                "cluster": cluster
                if cluster is not None
                else {"server": SERVER, "certificate-authority-data": b64(CA_PEM)},
            },
            {
                "name": "other-cluster",
                "cluster": {"server": "https://10.0.0.9:443/", "insecure-skip-tls-verify": True},
            },
        ],
        "users": [
            {
                "name": "admin",
                "user": user
                if user is not None
                else {
                    "client-certificate-data": b64(CERT_PEM),
                    "client-key-data": b64(KEY_PEM),
                    "token": TOKEN,
                },
            },
            {"name": "robot", "user": {"token": "other-token"}},
        ],
        "contexts": [
            {"name": "main", "context": {"cluster": "main-cluster", "user": "admin"}},
            {"name": "other", "context": {"cluster": "other-cluster", "user": "robot"}},
        ],
        "current-context": "main",
    }


def dump(document: object) -> str:
    return yaml.safe_dump(document, sort_keys=False)


def secret_fragments() -> list[str]:
    """Every form in which the token or key material could leak into text."""
    key_body = "".join(KEY_PEM.decode().splitlines()[1:-1])
    return [TOKEN, key_body[:32], key_body[-32:], b64(KEY_PEM)[:40], "PRIVATE KEY"]


def assert_no_secrets(text: str) -> None:
    for fragment in secret_fragments():
        assert fragment not in text, f"secret material leaked: {fragment[:12]}…"


def assert_invalid(exc: pytest.ExceptionInfo[errors.KubeconfigInvalid], *fragments: str) -> None:
    error = exc.value
    assert type(error) is errors.KubeconfigInvalid
    assert error.code == "kubeconfig_invalid"
    assert error.hint.strip(), "every kubeconfig error says what to do"
    for fragment in fragments:
        assert fragment in str(error), (fragment, str(error))
    assert_no_secrets(str(error))
    assert_no_secrets(repr(error))
    assert_no_secrets(repr(error.to_dict()))


# ----- valid kubeconfigs ---------------------------------------------------------------------


def test_certificate_auth_inline() -> None:
    document = kubeconfig(user={"client-certificate-data": b64(CERT_PEM), "client-key-data": b64(KEY_PEM)})
    creds = parse_kubeconfig(dump(document))
    assert creds.server == SERVER
    assert creds.context == "main"
    assert creds.ca_pem == CA_PEM
    assert creds.client_cert_pem == CERT_PEM
    assert creds.client_key_pem == KEY_PEM
    assert creds.token is None
    assert creds.insecure_skip_tls_verify is False
    assert creds.tls_server_name is None


def test_token_auth() -> None:
    creds = parse_kubeconfig(dump(kubeconfig(user={"token": TOKEN})))
    assert creds.token == TOKEN
    assert creds.client_cert_pem is None
    assert creds.client_key_pem is None
    assert creds.ca_pem == CA_PEM


def test_file_references_are_relative_to_base_dir(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_bytes(CA_PEM)
    (tmp_path / "pki" / "admin.crt").write_bytes(CERT_PEM)
    (tmp_path / "pki" / "admin.key").write_bytes(KEY_PEM)
    (tmp_path / "token").write_text(f"  {TOKEN}\n")
    document = kubeconfig(
        cluster={"server": SERVER, "certificate-authority": "pki/ca.crt"},
        user={"client-certificate": "pki/admin.crt", "client-key": "pki/admin.key", "tokenFile": "token"},
    )
    creds = parse_kubeconfig(dump(document), base_dir=tmp_path)
    assert creds.ca_pem == CA_PEM
    assert creds.client_cert_pem == CERT_PEM
    assert creds.client_key_pem == KEY_PEM
    assert creds.token == TOKEN  # read from tokenFile, whitespace stripped


def test_load_kubeconfig_file_resolves_references_next_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_bytes(CA_PEM)
    path = tmp_path / "config"
    path.write_text(
        dump(kubeconfig(cluster={"server": SERVER, "certificate-authority": "ca.crt"}, user={"token": TOKEN}))
    )
    creds = load_kubeconfig_file(path)
    assert creds.ca_pem == CA_PEM
    assert creds.token == TOKEN


def test_context_selection() -> None:
    text = dump(kubeconfig())
    assert parse_kubeconfig(text).context == "main"
    other = parse_kubeconfig(text, context="other")
    assert other.context == "other"
    assert other.server == "https://10.0.0.9:443"  # trailing slash dropped
    assert other.token == "other-token"
    assert other.insecure_skip_tls_verify is True
    assert other.ca_pem is None


def test_context_argument_wins_over_a_missing_current_context() -> None:
    document = kubeconfig()
    del document["current-context"]
    assert parse_kubeconfig(dump(document), context="other").context == "other"


def test_tls_server_name_is_kept() -> None:
    document = kubeconfig(
        cluster={"server": SERVER, "certificate-authority-data": b64(CA_PEM), "tls-server-name": "kubernetes"}
    )
    assert parse_kubeconfig(dump(document)).tls_server_name == "kubernetes"


@pytest.mark.parametrize(
    "creds",
    [
        ClusterCredentials(
            server=SERVER, context="x", ca_pem=CA_PEM, client_cert_pem=CERT_PEM, client_key_pem=KEY_PEM
        ),
        ClusterCredentials(server=SERVER, context="x", ca_pem=CA_PEM, token=TOKEN),
        ClusterCredentials(
            server="https://h.example:8443", context="x", token=TOKEN, insecure_skip_tls_verify=True
        ),
        ClusterCredentials(
            server=SERVER,
            context="x",
            ca_pem=CA_PEM,
            client_cert_pem=CERT_PEM,
            client_key_pem=KEY_PEM,
            token=TOKEN,
            tls_server_name="kubernetes.default",
        ),
    ],
    ids=["cert", "token", "insecure", "everything"],
)
def test_to_kubeconfig_round_trips(creds: ClusterCredentials) -> None:
    document = creds.to_kubeconfig("imported")
    assert document["current-context"] == "imported"
    again = parse_kubeconfig(creds.to_yaml("imported"))
    assert again == dataclasses.replace(creds, context="imported")
    assert parse_kubeconfig(again.to_yaml("imported")) == again


def test_with_server_keeps_everything_else() -> None:
    creds = parse_kubeconfig(dump(kubeconfig()))
    moved = creds.with_server("https://127.0.0.1:7000")
    assert moved.server == "https://127.0.0.1:7000"
    assert dataclasses.replace(moved, server=creds.server) == creds


def test_repr_never_shows_key_material_or_token() -> None:
    creds = parse_kubeconfig(dump(kubeconfig()))
    assert creds.token == TOKEN  # the material is there …
    assert creds.client_key_pem == KEY_PEM
    assert_no_secrets(repr(creds))  # … but not in the repr
    assert_no_secrets(str(creds))
    assert_no_secrets(repr([creds]))
    assert SERVER in repr(creds)


# ----- malformed kubeconfigs -----------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set_user(**fields: Any) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        document["users"][0]["user"] = fields

    return mutate


def _set_cluster(**fields: Any) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        document["clusters"][0]["cluster"] = fields

    return mutate


def _set_context(**fields: Any) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        document["contexts"][0]["context"] = fields

    return mutate


def _drop_contexts(document: dict[str, Any]) -> None:
    del document["contexts"]
    del document["current-context"]


def _empty_contexts(document: dict[str, Any]) -> None:
    document["contexts"] = []


def _clusters_not_a_list(document: dict[str, Any]) -> None:
    document["clusters"] = {"main-cluster": {"server": SERVER}}


def _nameless_user(document: dict[str, Any]) -> None:
    del document["users"][0]["name"]


def _current_context_not_a_string(document: dict[str, Any]) -> None:
    document["current-context"] = ["main"]


KEY_B64 = b64(KEY_PEM)
CERT_B64 = b64(CERT_PEM)

MALFORMED: dict[str, tuple[Mutation, tuple[str, ...]]] = {
    "no contexts at all": (_drop_contexts, ("has no current-context",)),
    "current context missing from an empty list": (_empty_contexts, ("has no context 'main'",)),
    "current-context not a string": (_current_context_not_a_string, ("has no context",)),
    "clusters not a list": (_clusters_not_a_list, ("'clusters' must be a list",)),
    "user entry without a name": (_nameless_user, ("users[0] has no name",)),
    "context names an unknown cluster": (
        _set_context(cluster="gone", user="admin"),
        ("names unknown cluster 'gone'",),
    ),
    "context names a cluster that is not a string": (
        _set_context(cluster=["main-cluster"], user="admin"),
        ("names unknown cluster",),
    ),
    "context names an unknown user": (
        _set_context(cluster="main-cluster", user="nobody"),
        ("names unknown user 'nobody'",),
    ),
    "context names a user that is not a string": (
        _set_context(cluster="main-cluster", user={"token": TOKEN}),
        ("names unknown user",),
    ),
    "no server": (_set_cluster(), ("no valid server URL",)),
    "server not a URL": (_set_cluster(server="just words"), ("no valid server URL",)),
    "server with another scheme": (_set_cluster(server="ftp://127.0.0.1:6443"), ("no valid server URL",)),
    "server without a host": (_set_cluster(server="https://:6443"), ("no valid server URL",)),
    "server with a port out of range": (
        _set_cluster(server="https://127.0.0.1:99999"),
        ("no valid server URL",),
    ),
    "server with a non-numeric port": (
        _set_cluster(server="https://127.0.0.1:https"),
        ("no valid server URL",),
    ),
    "server with a broken IPv6 literal": (_set_cluster(server="https://[::1:6443"), ("no valid server URL",)),
    "CA data not base64": (
        _set_cluster(server=SERVER, **{"certificate-authority-data": "not base64 !!"}),
        ("'certificate-authority-data' is not valid base64",),
    ),
    "client certificate data not base64": (
        _set_user(**{"client-certificate-data": CERT_B64 + "!!", "client-key-data": KEY_B64}),
        ("'client-certificate-data' is not valid base64",),
    ),
    "client key data not base64 (and it carries key material)": (
        _set_user(**{"client-certificate-data": CERT_B64, "client-key-data": KEY_B64[:-4] + "@@@@"}),
        ("'client-key-data' is not valid base64",),
    ),
    "certificate without key": (
        _set_user(**{"client-certificate-data": CERT_B64}),
        ("client certificate without its key",),
    ),
    "key without certificate": (
        _set_user(**{"client-key-data": KEY_B64}),
        ("client certificate without its key",),
    ),
    "exec plugin": (
        _set_user(exec={"command": "aws", "args": ["eks", "get-token"], "apiVersion": "x"}),
        ("authenticates with 'exec'",),
    ),
    "auth-provider": (
        _set_user(**{"auth-provider": {"name": "gcp", "config": {"access-token": TOKEN}}}),
        ("authenticates with 'auth-provider'",),
    ),
    "basic auth": (_set_user(username="admin", password=TOKEN), ("basic authentication",)),
    "user without credentials": (_set_user(), ("user 'admin' has no credentials",)),
    "context without user": (_set_context(cluster="main-cluster"), ("has no credentials",)),
    "unreadable certificate file": (
        _set_user(**{"client-certificate": "/nonexistent/admin.crt", "client-key-data": KEY_B64}),
        ("/nonexistent/admin.crt", "cannot be read"),
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_kubeconfig(case: str) -> None:
    mutate, fragments = MALFORMED[case]
    document = copy.deepcopy(kubeconfig())
    mutate(document)
    with pytest.raises(errors.KubeconfigInvalid) as exc:
        parse_kubeconfig(dump(document), source="/home/me/.kube/config")
    assert_invalid(exc, "kubeconfig /home/me/.kube/config", *fragments)


def test_unknown_context_lists_the_available_ones() -> None:
    with pytest.raises(errors.KubeconfigInvalid) as exc:
        parse_kubeconfig(dump(kubeconfig()), context="prod")
    assert_invalid(exc, "has no context 'prod'")
    assert exc.value.hint == "available contexts: main, other"


def test_missing_current_context_suggests_context_flag() -> None:
    document = kubeconfig()
    del document["current-context"]
    with pytest.raises(errors.KubeconfigInvalid) as exc:
        parse_kubeconfig(dump(document))
    assert_invalid(exc, "has no current-context")
    assert "--context" in exc.value.hint
    assert "main, other" in exc.value.hint


def test_not_yaml_names_the_line_and_not_the_content() -> None:
    text = dump(kubeconfig()) + "users: [unclosed\n  - token: " + TOKEN + "\n"
    with pytest.raises(errors.KubeconfigInvalid) as exc:
        parse_kubeconfig(text)
    assert_invalid(exc, "is not valid YAML at line")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string", "42", "", "null"])
def test_not_a_mapping(text: str) -> None:
    with pytest.raises(errors.KubeconfigInvalid) as exc:
        parse_kubeconfig(text)
    assert_invalid(exc, "is not a YAML mapping")


def test_token_file_that_is_not_text(tmp_path: Path) -> None:
    (tmp_path / "token").write_bytes(b"\xff\xfe\x00binary")
    document = kubeconfig(user={"tokenFile": "token"})
    with pytest.raises(errors.KubeconfigInvalid) as exc:
        parse_kubeconfig(dump(document), base_dir=tmp_path)
    assert_invalid(exc, "tokenFile", "is not text")


def test_relative_reference_that_does_not_exist_names_the_resolved_path(tmp_path: Path) -> None:
    document = kubeconfig(
        cluster={"server": SERVER, "certificate-authority": "missing/ca.crt"}, user={"token": TOKEN}
    )
    with pytest.raises(errors.KubeconfigInvalid) as exc:
        parse_kubeconfig(dump(document), base_dir=tmp_path)
    assert_invalid(exc, str(tmp_path / "missing" / "ca.crt"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(errors.KubeconfigInvalid) as exc:
        load_kubeconfig_file(tmp_path / "absent")
    assert_invalid(exc, "does not exist", str(tmp_path / "absent"))
    assert "--kubeconfig" in exc.value.hint


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(errors.KubeconfigInvalid) as exc:
        load_kubeconfig_file(tmp_path)
    assert_invalid(exc, "cannot be read")


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(errors.KubeconfigInvalid) as exc:
        load_kubeconfig_file(path)
    assert_invalid(exc, str(path))
