"""etcd snapshots of local clusters: save one from a running member, read its status, restore it.

etcd's own tools do the work, from the binary cache (same release as the
server): ``etcdctl snapshot save`` streams a consistent snapshot from a
member over TLS (client-certificate auth, as the API server connects) and
checks the sha256 etcd appends to it; ``etcdutl snapshot status`` reads its
revision and key count; ``etcdutl snapshot restore`` writes a fresh member
data directory from it. A restore is done once per member, each with the
member's own ``--name``, ``--initial-advertise-peer-urls`` and the cluster's
``--initial-cluster``/``--initial-cluster-token`` exactly as ``topology``
starts etcd, so the restored members form the cluster etcd is then started
as. The argv builders are pure; ``run`` executes them with ``subprocess``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from pilothouse import errors
from pilothouse.providers.local.layout import ClusterLayout
from pilothouse.providers.local.topology import PortPlan


def client_url(ports: PortPlan, member: int) -> str:
    return f"https://127.0.0.1:{ports.etcd_client[member]}"


def _peer_url(ports: PortPlan, member: int) -> str:
    return f"https://127.0.0.1:{ports.etcd_peer[member]}"


def save_argv(etcdctl: Path, layout: ClusterLayout, ports: PortPlan, member: int, out: Path) -> list[str]:
    pki = layout.pki / "etcd"
    return [
        str(etcdctl),
        f"--endpoints={client_url(ports, member)}",
        f"--cacert={pki / 'ca.crt'}",
        f"--cert={pki / 'apiserver-client.crt'}",
        f"--key={pki / 'apiserver-client.key'}",
        "--dial-timeout=10s",
        "--command-timeout=600s",
        "snapshot",
        "save",
        str(out),
    ]


def status_argv(etcdutl: Path, snapshot: Path) -> list[str]:
    return [str(etcdutl), "snapshot", "status", str(snapshot), "--write-out=json"]


def restore_argv(
    etcdutl: Path,
    snapshot: Path,
    *,
    cluster: str,
    ports: PortPlan,
    member: int,
    data_dir: Path,
    bump_revision: int,
) -> list[str]:
    """``etcdutl snapshot restore`` for ``member`` of ``cluster``, matching ``topology._etcd``."""
    peers = ",".join(f"etcd-{j}={_peer_url(ports, j)}" for j in range(len(ports.etcd_peer)))
    argv = [
        str(etcdutl),
        "snapshot",
        "restore",
        str(snapshot),
        f"--name=etcd-{member}",
        f"--initial-cluster={peers}",
        f"--initial-cluster-token=pilothouse-{cluster}",
        f"--initial-advertise-peer-urls={_peer_url(ports, member)}",
        f"--data-dir={data_dir}",
    ]
    if bump_revision:
        argv += [f"--bump-revision={bump_revision}", "--mark-compacted"]
    return argv


def run(argv: list[str], *, what: str, timeout: float = 600.0) -> str:
    """Run an etcd tool; ``ProcessFailed`` quoting its output when it fails."""
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise errors.ProcessFailed(
            f"{what} did not finish within {timeout:.0f}s", hint="check the etcd member's health and disk"
        ) from None
    except OSError as exc:
        raise errors.BinaryError(
            f"cannot run {Path(argv[0]).name} for {what}: {exc.strerror}",
            hint="install the etcd tools: `pilothouse binaries install --from-source`",
        ) from None
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        raise errors.ProcessFailed(
            f"{what} failed (exit {proc.returncode}): {' | '.join(detail)[-600:]}",
            hint="read the message above; nothing was changed by the failed command",
        )
    return proc.stdout
