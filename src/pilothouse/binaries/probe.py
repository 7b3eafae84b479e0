"""Run each binary's ``--version`` and check it reports the pinned version.

Owns the last line of defence of an install: a binary that does not start, or
reports another version (a mis-stamped build, a wrong download), is refused
before it reaches the cache. The parsing (:func:`check_version_output`) is pure;
:func:`probe` runs the binary with ``subprocess``.

What each binary prints (checked on real builds):

- kube-apiserver, kube-controller-manager, kube-scheduler: ``Kubernetes v1.36.3``
  (``v0.0.0`` when built without the ``-X …gitVersion`` stamps).
- etcd: first line ``etcd Version: 3.6.16``; ``etcdctl version`` and ``etcdutl
  version`` (a command: ``--version`` is rejected): ``etcdctl version: 3.6.16``
  / ``etcdutl version: 3.6.16``, then the API version.
- kwok, kwokctl: ``kwok version v0.8.0 go1.26.8 (linux/amd64)`` (cobra's template).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from pilothouse import errors
from pilothouse.binaries import catalog
from pilothouse.vocabulary import Component

_TIMEOUT_SECONDS = 30.0
_KUBERNETES_RE = re.compile(r"Kubernetes v(\S+)")
_ETCD_RE = re.compile(r"^etcd Version: (\S+)")
_ETCD_TOOL_RE = re.compile(r"^etcd[a-z]+ version: (\S+)")
_KWOK_RE = re.compile(r"\bversion v?(\d+\.\d+\.\d+\S*)")


def reported_version(binary: str, output: str) -> str | None:
    """The version a binary's ``--version`` output claims (without ``v``), or None."""
    if binary == Component.ETCD:
        first = output.strip().splitlines()[0] if output.strip() else ""
        match = _ETCD_RE.match(first)
    elif binary in (Component.ETCDCTL, Component.ETCDUTL):
        first = output.strip().splitlines()[0] if output.strip() else ""
        match = _ETCD_TOOL_RE.match(first)
    elif binary in (Component.KWOK, catalog.KWOKCTL):
        match = _KWOK_RE.search(output)
    else:
        match = _KUBERNETES_RE.search(output)
    return match.group(1) if match else None


def version_arguments(binary: str) -> tuple[str, ...]:
    """How to ask ``binary`` its version: the etcd tools have a ``version`` command, no flag."""
    return ("version",) if binary in (Component.ETCDCTL, Component.ETCDUTL) else ("--version",)


def check_version_output(binary: str, output: str, pins: catalog.ReleasePins) -> None:
    """``BinaryError`` unless ``output`` reports the version pinned for ``binary``."""
    expected = pins.version_of(binary)
    got = reported_version(binary, output)
    if got != expected:
        shown = output.strip().splitlines()[0] if output.strip() else "(no output)"
        raise errors.BinaryError(
            f"{binary} reports {('version ' + got) if got else repr(shown[:200])}, expected {expected}"
            f" (for Kubernetes v{pins.kubernetes})",
            hint="the download or build produced the wrong binary; reinstall with --force, or try "
            "the other source (--from-source, or without it)",
            binary=binary,
            expected=expected,
            got=got or "",
        )


def probe(binary_path: Path, pins: catalog.ReleasePins, *, name: str | None = None) -> str:
    """Run ``<binary> --version`` (``version`` for the etcd tools); return its output or raise
    ``BinaryError``."""
    binary = name or binary_path.name
    try:
        proc = subprocess.run(
            [str(binary_path), *version_arguments(binary)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_TIMEOUT_SECONDS,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise errors.BinaryError(
            f"{binary} ({binary_path}) does not run: {exc}",
            hint="the file may be for another architecture or truncated; retry with --force",
            binary=binary,
        ) from exc
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise errors.BinaryError(
            f"`{binary} --version` exited {proc.returncode}: {output.strip()[:300]}",
            hint="the file may be for another architecture or truncated; retry with --force",
            binary=binary,
        )
    check_version_output(binary, output, pins)
    return output
