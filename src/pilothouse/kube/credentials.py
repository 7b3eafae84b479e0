"""Cluster credentials: a kubeconfig reduced to what one connection needs.

Parsing is pure: it takes the kubeconfig's text (and, for file references,
the directory it came from) and returns ``ClusterCredentials`` holding the
server URL, CA and client material inline, so the store can keep them
encrypted as one self-contained document. PyYAML parses; every problem is a
``KubeconfigInvalid`` that names the field and says what to fix. Nothing
here ever puts key material or tokens into an error message.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from pilothouse import errors


@dataclass(frozen=True, repr=False)
class ClusterCredentials:
    """Everything needed to reach one cluster as one user."""

    server: str
    context: str
    ca_pem: bytes | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    token: str | None = None
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None

    def __repr__(self) -> str:  # never show key material
        return f"ClusterCredentials(server={self.server!r}, context={self.context!r})"

    def with_server(self, server: str) -> ClusterCredentials:
        return dataclasses.replace(self, server=server)

    def to_kubeconfig(self, name: str) -> dict[str, Any]:
        """A self-contained kubeconfig (data inlined) for these credentials."""
        cluster: dict[str, Any] = {"server": self.server}
        if self.ca_pem:
            cluster["certificate-authority-data"] = _b64(self.ca_pem)
        if self.insecure_skip_tls_verify:
            cluster["insecure-skip-tls-verify"] = True
        if self.tls_server_name:
            cluster["tls-server-name"] = self.tls_server_name
        user: dict[str, Any] = {}
        if self.client_cert_pem and self.client_key_pem:
            user["client-certificate-data"] = _b64(self.client_cert_pem)
            user["client-key-data"] = _b64(self.client_key_pem)
        if self.token:
            user["token"] = self.token
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": cluster}],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        }

    def to_yaml(self, name: str) -> str:
        return yaml.safe_dump(self.to_kubeconfig(name), sort_keys=False)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _invalid(source: str, problem: str, hint: str) -> errors.KubeconfigInvalid:
    return errors.KubeconfigInvalid(f"kubeconfig {source}: {problem}", hint=hint, source=source)


def _label(reference: Any) -> str:
    """A reference for a message: the name, never the contents of a misplaced mapping."""
    if reference is None or isinstance(reference, str):
        return repr(reference)
    return f"<a {type(reference).__name__}, not a name>"


def _named(entries: Any, kind: str, source: str) -> dict[str, Mapping[str, Any]]:
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise _invalid(source, f"'{kind}' must be a list", f"check the '{kind}' section")
    result: dict[str, Mapping[str, Any]] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise _invalid(source, f"{kind}[{index}] has no name", f"give every entry of '{kind}' a name")
        body = entry.get(kind.rstrip("s"))
        result[entry["name"]] = body if isinstance(body, Mapping) else {}
    return result


def _material(
    section: Mapping[str, Any], data_key: str, file_key: str, base_dir: Path | None, source: str
) -> bytes | None:
    if section.get(data_key):
        try:
            return base64.b64decode(str(section[data_key]), validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(
                source, f"'{data_key}' is not valid base64", f"re-encode {data_key} with `base64 -w0`"
            ) from None
    if section.get(file_key):
        path = Path(str(section[file_key])).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            return path.read_bytes()
        except OSError as exc:
            raise _invalid(
                source,
                f"'{file_key}' points at {path}, which cannot be read ({exc.strerror})",
                "fix the path or inline the data with the '-data' field",
            ) from None
    return None


def parse_kubeconfig(
    text: str, *, context: str | None = None, source: str = "<input>", base_dir: Path | None = None
) -> ClusterCredentials:
    """Parse a kubeconfig and return the credentials of ``context`` (default: current)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise _invalid(source, f"is not valid YAML{where}", "check the file is a kubeconfig") from None
    if not isinstance(document, Mapping):
        raise _invalid(source, "is not a YAML mapping", "a kubeconfig has clusters, users and contexts")
    contexts = _named(document.get("contexts"), "contexts", source)
    clusters = _named(document.get("clusters"), "clusters", source)
    users = _named(document.get("users"), "users", source)
    chosen = context or document.get("current-context")
    if not chosen:
        raise _invalid(
            source,
            "has no current-context",
            f"pass --context, one of: {', '.join(sorted(contexts)) or 'none'}",
        )
    if not isinstance(chosen, str) or chosen not in contexts:
        raise _invalid(
            source,
            f"has no context {_label(chosen)}",
            f"available contexts: {', '.join(sorted(contexts)) or 'none'}",
        )
    ctx = contexts[chosen]
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if not isinstance(cluster_name, str) or cluster_name not in clusters:
        raise _invalid(
            source, f"context {chosen!r} names unknown cluster {_label(cluster_name)}", "fix the context"
        )
    cluster = clusters[str(cluster_name)]
    if user_name is not None and (not isinstance(user_name, str) or user_name not in users):
        raise _invalid(
            source, f"context {chosen!r} names unknown user {_label(user_name)}", "fix the context"
        )
    user = users[user_name] if user_name is not None else {}

    server = cluster.get("server")
    try:
        parsed = urlparse(str(server or ""))
        parsed.port  # noqa: B018 - raises ValueError on a port out of range or not a number
    except ValueError:
        parsed = urlparse("")
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise _invalid(
            source, f"cluster {cluster_name!r} has no valid server URL", "set server: https://HOST:PORT"
        )
    for unsupported in ("exec", "auth-provider"):
        if user.get(unsupported):
            raise _invalid(
                source,
                f"user {user_name!r} authenticates with '{unsupported}', which Pilothouse cannot store",
                "import with a client certificate or a (service-account) token instead",
            )
    token = user.get("token")
    if not token and user.get("tokenFile"):
        raw = _material(user, "", "tokenFile", base_dir, source)
        try:
            token = raw.decode().strip() if raw else None
        except UnicodeDecodeError:
            raise _invalid(
                source, f"the tokenFile of user {user_name!r} is not text", "point tokenFile at a token file"
            ) from None
    if user.get("username") or user.get("password"):
        raise _invalid(
            source,
            "basic authentication is not supported by Kubernetes any more",
            "use a token or certificate",
        )
    cert = _material(user, "client-certificate-data", "client-certificate", base_dir, source)
    key = _material(user, "client-key-data", "client-key", base_dir, source)
    if bool(cert) != bool(key):
        raise _invalid(
            source,
            f"user {user_name!r} has a client certificate without its key (or the reverse)",
            "provide both client-certificate and client-key",
        )
    if not (cert or token):
        raise _invalid(
            source, f"user {user_name!r} has no credentials", "add a token or a client certificate"
        )
    return ClusterCredentials(
        server=str(server).rstrip("/"),
        context=str(chosen),
        ca_pem=_material(cluster, "certificate-authority-data", "certificate-authority", base_dir, source),
        client_cert_pem=cert,
        client_key_pem=key,
        token=str(token) if token else None,
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=str(cluster["tls-server-name"]) if cluster.get("tls-server-name") else None,
    )


def load_kubeconfig_file(path: Path, *, context: str | None = None) -> ClusterCredentials:
    """Read and parse a kubeconfig file; a missing or unreadable file is ``KubeconfigInvalid``."""
    return parse_kubeconfig(
        read_kubeconfig_file(path), context=context, source=str(path), base_dir=path.parent
    )


def read_kubeconfig_file(path: Path) -> str:
    """The text of a kubeconfig file; a missing or unreadable file is ``KubeconfigInvalid``."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise errors.KubeconfigInvalid(
            f"kubeconfig {path} does not exist", hint="check the path given to --kubeconfig"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.KubeconfigInvalid(
            f"kubeconfig {path} cannot be read ({exc})", hint="check the file and its permissions"
        ) from None
