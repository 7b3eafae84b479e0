"""Shared vocabulary: closed sets of names used across Pilothouse.

A leaf module: it imports nothing from Pilothouse, so every layer may use it.
"""

from __future__ import annotations

from enum import StrEnum

FIELD_MANAGER = "pilothouse"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_ANNOTATION_VALUE = "fake"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
#: On a node a node rollout cordoned: the operation's id (abort uncordons only these).
CORDONED_BY_ANNOTATION = "pilothouse.dev/cordoned-by"
#: On a node a node rollout created: the operation's id.
ROLLOUT_LABEL = "pilothouse.dev/rollout"
#: A PreferNoSchedule taint a node rollout puts on the nodes it will replace (value: its id), so
#: the pods it moves prefer new nodes and move once.
OUTDATED_TAINT = "pilothouse.dev/outdated"


class ProviderKind(StrEnum):
    """How a cluster came to Pilothouse."""

    LOCAL = "local"
    IMPORT = "import"


class ClusterPhase(StrEnum):
    """Observed lifecycle phase of a cluster record."""

    PROVISIONING = "Provisioning"
    RUNNING = "Running"
    STOPPED = "Stopped"
    FAILED = "Failed"
    DELETING = "Deleting"

    @property
    def settled(self) -> bool:
        return self in (ClusterPhase.RUNNING, ClusterPhase.STOPPED, ClusterPhase.FAILED)


class DesiredState(StrEnum):
    """What the user asked a local cluster to be; reconcilers converge to it."""

    RUNNING = "running"
    STOPPED = "stopped"


class Component(StrEnum):
    """Processes a local cluster runs, and the etcd tools it is backed up and restored with.
    The value is the binary's file name."""

    ETCD = "etcd"
    KUBE_APISERVER = "kube-apiserver"
    KUBE_CONTROLLER_MANAGER = "kube-controller-manager"
    KUBE_SCHEDULER = "kube-scheduler"
    KWOK = "kwok"
    HAPROXY = "haproxy"
    ETCDCTL = "etcdctl"  # snapshots of a running member (``fleet.backups``)
    ETCDUTL = "etcdutl"  # snapshot checks and restores into fresh data directories

    @property
    def from_kubernetes_release(self) -> bool:
        return self in (
            Component.KUBE_APISERVER,
            Component.KUBE_CONTROLLER_MANAGER,
            Component.KUBE_SCHEDULER,
        )


#: Components Pilothouse installs into its binary cache (HAProxy comes from Debian).
CACHED_COMPONENTS: tuple[Component, ...] = (
    Component.ETCD,
    Component.KUBE_APISERVER,
    Component.KUBE_CONTROLLER_MANAGER,
    Component.KUBE_SCHEDULER,
    Component.KWOK,
    Component.ETCDCTL,
    Component.ETCDUTL,
)


class OperationPhase(StrEnum):
    """Where a durable operation (``fleet.operations``) stands."""

    PENDING = "Pending"
    RUNNING = "Running"
    PAUSED = "Paused"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ABORTED = "Aborted"

    @property
    def finished(self) -> bool:
        return self in (OperationPhase.SUCCEEDED, OperationPhase.FAILED, OperationPhase.ABORTED)


class OperationRequest(StrEnum):
    """What an operator asked of a running operation."""

    PAUSE = "pause"
    ABORT = "abort"


class BackupStatus(StrEnum):
    """Where an etcd backup (``fleet.backups``) stands."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class BackupTrigger(StrEnum):
    """Who asked for an etcd backup."""

    MANUAL = "manual"
    SCHEDULED = "scheduled"
    DRILL = "drill"


class BackupStorageKind(StrEnum):
    """Where etcd snapshots are kept."""

    LOCAL = "local"
    S3 = "s3"
