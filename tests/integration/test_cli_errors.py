"""Every bad input to the ``pilothouse`` CLI, run as a real subprocess against the real store.

Each must end with exit code 1, ``error: …`` then ``hint: …`` on stderr and no
traceback, and must leave nothing behind: no new cluster record, no new
directory under ``<data dir>/clusters/``, no new process (listening or not)
working out of the data directory, and no change to what was stored.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
import yaml

from pilothouse.binaries import catalog
from pilothouse.binaries.cache import BinaryCache
from pilothouse.platform import Platform
from pilothouse.store.clusters import ClusterRecord
from tests.conftest import SHARED_CLUSTER

PILOTHOUSE = Path(sys.executable).with_name("pilothouse")
VERSION = "1.36.3"


# ----- helpers ---------------------------------------------------------------------------------


def run_cli(
    env: dict[str, str], *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PILOTHOUSE), *args],
        env={**os.environ, **env, "COLUMNS": "250", "NO_COLOR": "1", **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], *fragments: str) -> tuple[str, str]:
    """Exit 1, ``error:`` first, a ``hint:`` line, no traceback; return (message, hint)."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 1, output
    assert result.stderr.startswith("error: "), result.stderr
    lines = result.stderr.splitlines()
    hints = [line for line in lines if line.startswith("hint: ")]
    assert len(hints) == 1, result.stderr
    assert len(hints[0]) > len("hint: ") + 5, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    return lines[0].removeprefix("error: "), hints[0].removeprefix("hint: ")


def _processes_under(data_dir: Path) -> set[int]:
    """Processes whose command line or working directory is inside the data directory."""
    root = str(data_dir)
    found: set[int] = set()
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        cwd = proc.info["cwd"] or ""
        if root in cmdline or cwd.startswith(root):
            found.add(proc.pid)
    return found


def _listeners(pids: set[int]) -> set[tuple[int, int]]:
    return {
        (conn.pid, int(getattr(conn.laddr, "port", 0)))
        for conn in psutil.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids
    }


def _cluster_dirs(platform: Platform) -> list[str]:
    root = platform.settings.clusters_dir
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


@contextmanager
def nothing_created(platform: Platform) -> Iterator[None]:
    records = platform.clusters.clusters()
    dirs = _cluster_dirs(platform)
    processes = _processes_under(platform.settings.data_dir)
    listeners = _listeners(processes)
    assert listeners, "the session cluster's processes are visible, so a new one would be too"
    yield
    assert platform.clusters.clusters() == records  # same names, and no record changed
    assert _cluster_dirs(platform) == dirs
    after = _processes_under(platform.settings.data_dir)
    assert after == processes, f"new processes: {[psutil.Process(p).cmdline() for p in after - processes]}"
    assert _listeners(after) == listeners


@pytest.fixture
def cli(platform: Platform, shared_cluster: ClusterRecord, pilothouse_env: dict[str, str]) -> dict[str, str]:
    """The CLI's environment, with the session cluster up (so ``shared`` is a taken name)."""
    assert platform.clusters.view(SHARED_CLUSTER).processes
    return pilothouse_env


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----- cluster create --------------------------------------------------------------------------

CREATE_CASES = {
    "duplicate name": (["cluster", "create", SHARED_CLUSTER], "a cluster named 'shared' already exists"),
    "unknown version": (["cluster", "create", "x1", "--version", "1.99.0"], "version:"),
    "bad name": (["cluster", "create", "Bad_Name"], "name: must be lowercase letters"),
    "negative nodes": (["cluster", "create", "x4", "--nodes", "-1"], "nodes:"),
    "two control planes": (["cluster", "create", "x5", "--control-planes", "2"], "control_planes:"),
    "unknown provider": (["cluster", "create", "x6", "--provider", "aws"], "unknown provider 'aws'"),
}


@pytest.mark.parametrize("case", list(CREATE_CASES), ids=list(CREATE_CASES))
def test_create_rejects(case: str, cli: dict[str, str], platform: Platform) -> None:
    args, fragment = CREATE_CASES[case]
    with nothing_created(platform):
        result = run_cli(cli, *args)
    message, _hint = assert_clean_error(result, fragment)
    assert fragment in message  # on the error line itself, not only somewhere in the output


def test_create_unknown_version_says_which_are_supported(cli: dict[str, str], platform: Platform) -> None:
    with nothing_created(platform):
        result = run_cli(cli, "cluster", "create", "x1", "--version", "1.99.0")
    message, hint = assert_clean_error(result)
    assert "1.99.0 is not supported" in message
    assert hint == f"supported Kubernetes versions: {', '.join(catalog.supported_versions())}"


def test_create_on_a_port_already_taken(cli: dict[str, str], platform: Platform) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = int(held.getsockname()[1])
        with nothing_created(platform):
            result = run_cli(cli, "cluster", "create", "x2", "--api-port", str(port))
        message, hint = assert_clean_error(result)
        assert message == f"port {port} on 127.0.0.1 is already in use"
        assert f":{port}" in hint
        assert held.getsockname()[1] == port  # still ours


def test_create_without_the_binaries(cli: dict[str, str], platform: Platform, tmp_path: Path) -> None:
    empty_cache = tmp_path / "empty-cache"
    empty_cache.mkdir()
    with nothing_created(platform):
        result = run_cli(cli, "cluster", "create", "x3", extra_env={"PILOTHOUSE_CACHE_DIR": str(empty_cache)})
    message, hint = assert_clean_error(result)
    assert message.startswith(
        f"Kubernetes binaries v{VERSION} are not installed in {empty_cache / 'binaries'}"
    )
    assert "pilothouse binaries install" in hint
    assert list(empty_cache.iterdir()) == []


# ----- cluster import --------------------------------------------------------------------------


def _kubeconfig_for_closed_port(path: Path) -> str:
    server = f"https://127.0.0.1:{closed_port()}"
    path.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t0ken-Zq9XvW2pL7"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    return server


def test_import_missing_file(cli: dict[str, str], platform: Platform) -> None:
    with nothing_created(platform):
        result = run_cli(cli, "cluster", "import", "y1", "--kubeconfig", "/nonexistent")
    message, hint = assert_clean_error(result)
    assert message == "kubeconfig /nonexistent does not exist"
    assert "--kubeconfig" in hint


def test_import_invalid_yaml(cli: dict[str, str], platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("apiVersion: v1\nclusters: [\n  {name: c, server: }\n  token: oops\n")
    with nothing_created(platform):
        result = run_cli(cli, "cluster", "import", "y2", "--kubeconfig", str(path))
    message, _hint = assert_clean_error(result)
    assert message.startswith(f"kubeconfig {path}: is not valid YAML at line ")


def test_import_unreachable(cli: dict[str, str], platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "closed.yaml"
    server = _kubeconfig_for_closed_port(path)
    with nothing_created(platform):
        result = run_cli(cli, "cluster", "import", "y3", "--kubeconfig", str(path))
    message, _hint = assert_clean_error(result)
    assert message.startswith(f"cannot connect to {server}")
    assert "t0ken-Zq9XvW2pL7" not in result.stdout + result.stderr


def test_import_under_a_taken_name(cli: dict[str, str], platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "shared.yaml"
    path.write_text(platform.clusters.kubeconfig(SHARED_CLUSTER))
    with nothing_created(platform):
        result = run_cli(cli, "cluster", "import", SHARED_CLUSTER, "--kubeconfig", str(path))
    assert_clean_error(result, "a cluster named 'shared' already exists")


def test_import_bad_name(cli: dict[str, str], platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "shared.yaml"
    path.write_text(platform.clusters.kubeconfig(SHARED_CLUSTER))
    with nothing_created(platform):
        result = run_cli(cli, "cluster", "import", "Not_Valid", "--kubeconfig", str(path))
    assert_clean_error(result, "name: must be lowercase letters")


# ----- unknown clusters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["cluster", "show", "nosuch"],
        ["cluster", "delete", "nosuch", "-y"],
        ["cluster", "kubeconfig", "nosuch"],
    ],
    ids=["show", "delete", "kubeconfig"],
)
def test_unknown_cluster(args: list[str], cli: dict[str, str], platform: Platform) -> None:
    with nothing_created(platform):
        result = run_cli(cli, *args)
    message, hint = assert_clean_error(result)
    assert message == "no cluster named 'nosuch'"
    assert "pilothouse cluster list" in hint
    assert result.stdout == ""


# ----- corrupt binaries ------------------------------------------------------------------------


def test_verify_names_a_corrupt_binary(
    pilothouse_env: dict[str, str], installed_binaries: BinaryCache, tmp_path: Path
) -> None:
    source = installed_binaries.version_dir(VERSION)
    cache = tmp_path / "cache"
    (cache / "binaries").mkdir(parents=True)
    target = cache / "binaries" / source.name
    subprocess.run(["cp", "-al", str(source), str(target)], check=True)  # hardlinks: no 420 MB copy
    env = {"PILOTHOUSE_CACHE_DIR": str(cache)}

    # Control: the linked copy verifies, so what fails below is the corruption alone.
    good = run_cli(pilothouse_env, "binaries", "verify", "--version", VERSION, extra_env=env)
    assert good.returncode == 0, good.stderr

    original = source / "kwok"
    before = original.stat()
    data = bytearray(original.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit pattern, same size
    replacement = target / ".kwok.corrupt"
    replacement.write_bytes(bytes(data))
    replacement.chmod(0o755)
    replacement.replace(target / "kwok")  # a new inode: the shared original is not touched

    after = original.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert (target / "kwok").stat().st_ino != before.st_ino
    assert (target / "etcd").stat().st_ino == (source / "etcd").stat().st_ino

    result = run_cli(pilothouse_env, "binaries", "verify", "--version", VERSION, extra_env=env)
    message, hint = assert_clean_error(result)
    assert message.startswith(f"kwok in {target} is corrupt: expected sha256 ")
    assert f"pilothouse binaries install --version {VERSION} --force" in hint
    assert result.stdout == ""
    assert installed_binaries.is_installed(VERSION)
