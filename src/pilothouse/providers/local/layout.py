"""Where a local cluster keeps its files: one directory per cluster.

``<data>/clusters/<name>/`` holds ``pki/``, ``etcd-<i>/`` data, ``config/``
(kubeconfigs of the components, audit policy, encryption config, HAProxy and
kwok configuration), ``logs/`` and the audit log. The directory is 0700: it
holds private keys the processes need to run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ClusterLayout:
    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def etcd_data(self, member: int) -> Path:
        return self.root / f"etcd-{member}"

    def kubeconfig(self, user: str) -> Path:
        return self.config / f"{user}.kubeconfig"

    @property
    def audit_policy(self) -> Path:
        return self.config / "audit-policy.yaml"

    @property
    def audit_log(self) -> Path:
        return self.logs / "audit.log"

    @property
    def encryption_config(self) -> Path:
        return self.config / "encryption-config.yaml"

    @property
    def kwok_config(self) -> Path:
        return self.config / "kwok.yaml"

    @property
    def haproxy_config(self) -> Path:
        return self.config / "haproxy.cfg"

    @property
    def haproxy_socket(self) -> Path:
        return self.root / "haproxy.sock"

    def log_file(self, process: str) -> Path:
        return self.logs / f"{process}.log"

    def create(self) -> None:
        for directory in (self.root, self.pki, self.config, self.logs):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root.chmod(0o700)
