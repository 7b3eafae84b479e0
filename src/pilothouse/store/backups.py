"""etcd backup records: what was snapshotted, where it is, and how to check it.

``BackupStore`` is the only way the rest of Pilothouse reads or writes the
``backups`` table. A record is written RUNNING before the snapshot is taken
(naming the writing process in ``holder``), then COMPLETED with its location,
size, sha256 and etcd revision, or FAILED with the reason. The cluster's
encryption config, without which the Secrets in a snapshot are unreadable,
is sealed with the platform's ``SecretBox`` in the ``secrets`` table (owner
``backup:<id>``): it never travels with the snapshot file, so a copied
bucket or directory does not hold the key to the Secrets in it.
SQLAlchemy does the work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from pilothouse import errors
from pilothouse.store.db import Database
from pilothouse.store.models import BackupRow, SecretRow, utcnow
from pilothouse.store.secrets import SecretBox
from pilothouse.vocabulary import BackupStatus, BackupStorageKind, BackupTrigger

ENCRYPTION_CONFIG = "encryption-config"


@dataclass(frozen=True)
class BackupRecord:
    id: str
    cluster: str
    status: BackupStatus
    trigger: BackupTrigger
    schedule: str | None
    scheduled_for: datetime | None
    operation_id: str | None
    storage: BackupStorageKind
    location: str
    size_bytes: int
    sha256: str
    etcd_revision: int
    total_keys: int
    kubernetes_version: str
    etcd_version: str
    control_planes: int
    message: str
    holder: str | None
    created_at: datetime
    finished_at: datetime | None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "cluster": self.cluster,
            "status": self.status.value,
            "trigger": self.trigger.value,
            "schedule": self.schedule,
            "scheduled_for": self.scheduled_for.isoformat() if self.scheduled_for else None,
            "operation_id": self.operation_id,
            "storage": self.storage.value,
            "location": self.location,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "etcd_revision": self.etcd_revision,
            "total_keys": self.total_keys,
            "kubernetes_version": self.kubernetes_version,
            "etcd_version": self.etcd_version,
            "control_planes": self.control_planes,
            "message": self.message,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


def _record(row: BackupRow) -> BackupRecord:
    return BackupRecord(
        id=row.id,
        cluster=row.cluster,
        status=BackupStatus(row.status),
        trigger=BackupTrigger(row.trigger),
        schedule=row.schedule,
        scheduled_for=row.scheduled_for,
        operation_id=row.operation_id,
        storage=BackupStorageKind(row.storage),
        location=row.location,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        etcd_revision=row.etcd_revision,
        total_keys=row.total_keys,
        kubernetes_version=row.kubernetes_version,
        etcd_version=row.etcd_version,
        control_planes=row.control_planes,
        message=row.message,
        holder=row.holder,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def _owner(backup_id: str) -> str:
    return f"backup:{backup_id}"


def _not_found(backup_id: str) -> errors.NotFound:
    return errors.NotFound(
        f"no backup {backup_id!r}",
        hint="list them with `pilothouse backup list` (a unique id prefix will do)",
    )


class BackupStore:
    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db = db
        self.box = box

    def begin(
        self,
        cluster: str,
        *,
        trigger: BackupTrigger,
        storage: BackupStorageKind,
        kubernetes_version: str,
        etcd_version: str,
        control_planes: int,
        holder: str,
        schedule: str | None = None,
        scheduled_for: datetime | None = None,
        operation_id: str | None = None,
    ) -> BackupRecord:
        """A RUNNING record, written before the snapshot is taken."""
        with self.db.session() as session:
            row = BackupRow(
                cluster=cluster,
                status=BackupStatus.RUNNING.value,
                trigger=trigger.value,
                schedule=schedule,
                scheduled_for=scheduled_for,
                operation_id=operation_id,
                storage=storage.value,
                kubernetes_version=kubernetes_version,
                etcd_version=etcd_version,
                control_planes=control_planes,
                holder=holder,
                message="taking the snapshot",
            )
            session.add(row)
            session.flush()
            return _record(row)

    def complete(
        self,
        backup_id: str,
        *,
        location: str,
        size_bytes: int,
        sha256: str,
        etcd_revision: int,
        total_keys: int,
        encryption_config: bytes,
    ) -> BackupRecord:
        """Mark the backup COMPLETED and seal its encryption config, in one transaction."""
        with self.db.session() as session:
            row = session.get(BackupRow, backup_id)
            if row is None:
                raise _not_found(backup_id)
            row.status = BackupStatus.COMPLETED.value
            row.location = location
            row.size_bytes = size_bytes
            row.sha256 = sha256
            row.etcd_revision = etcd_revision
            row.total_keys = total_keys
            row.holder = None
            row.message = f"revision {etcd_revision}, {total_keys} keys"
            row.finished_at = utcnow()
            owner = _owner(backup_id)
            session.execute(delete(SecretRow).where(SecretRow.owner == owner))
            session.add(
                SecretRow(
                    owner=owner,
                    name=ENCRYPTION_CONFIG,
                    ciphertext=self.box.seal(owner, ENCRYPTION_CONFIG, encryption_config),
                )
            )
            session.flush()
            return _record(row)

    def fail(self, backup_id: str, message: str) -> BackupRecord:
        with self.db.session() as session:
            row = session.get(BackupRow, backup_id)
            if row is None:
                raise _not_found(backup_id)
            row.status = BackupStatus.FAILED.value
            row.message = message
            row.holder = None
            row.finished_at = utcnow()
            session.flush()
            return _record(row)

    def get(self, backup_id: str) -> BackupRecord:
        with self.db.session() as session:
            row = session.get(BackupRow, backup_id)
            if row is None:
                raise _not_found(backup_id)
            return _record(row)

    def resolve(self, prefix: str) -> BackupRecord:
        """The one backup whose id starts with ``prefix``; ``NotFound`` for none or several."""
        if not prefix:
            raise _not_found(prefix)
        with self.db.session() as session:
            rows = session.scalars(select(BackupRow).where(BackupRow.id.startswith(prefix)).limit(2)).all()
            if len(rows) != 1:
                if rows:
                    raise errors.NotFound(
                        f"several backups start with {prefix!r}", hint="give more characters of the id"
                    )
                raise _not_found(prefix)
            return _record(rows[0])

    def list(
        self,
        *,
        cluster: str | None = None,
        statuses: Iterable[BackupStatus] | None = None,
        schedule: str | None = None,
        operation_id: str | None = None,
    ) -> list[BackupRecord]:
        """Backups, newest first."""
        query = select(BackupRow).order_by(BackupRow.created_at.desc(), BackupRow.id)
        if cluster is not None:
            query = query.where(BackupRow.cluster == cluster)
        if statuses is not None:
            query = query.where(BackupRow.status.in_([s.value for s in statuses]))
        if schedule is not None:
            query = query.where(BackupRow.schedule == schedule)
        if operation_id is not None:
            query = query.where(BackupRow.operation_id == operation_id)
        with self.db.session() as session:
            return [_record(r) for r in session.scalars(query).all()]

    def last_scheduled_slot(self, cluster: str, schedule: str) -> datetime | None:
        """The newest cron slot of ``schedule`` a backup of ``cluster`` was attempted for."""
        with self.db.session() as session:
            return session.scalars(
                select(BackupRow.scheduled_for)
                .where(
                    BackupRow.cluster == cluster,
                    BackupRow.schedule == schedule,
                    BackupRow.scheduled_for.is_not(None),
                )
                .order_by(BackupRow.scheduled_for.desc())
                .limit(1)
            ).first()

    def encryption_config(self, backup_id: str) -> bytes:
        owner = _owner(backup_id)
        with self.db.session() as session:
            row = session.scalars(
                select(SecretRow).where(SecretRow.owner == owner, SecretRow.name == ENCRYPTION_CONFIG)
            ).one_or_none()
            if row is None:
                raise errors.NotFound(
                    f"backup {backup_id} has no encryption config: it never completed",
                    hint="restore a completed backup (`pilothouse backup list`)",
                )
            return self.box.open(owner, ENCRYPTION_CONFIG, row.ciphertext)

    def remove(self, backup_id: str) -> None:
        """Delete the record and its sealed encryption config (the caller deletes the file first)."""
        with self.db.session() as session:
            session.execute(delete(SecretRow).where(SecretRow.owner == _owner(backup_id)))
            session.execute(delete(BackupRow).where(BackupRow.id == backup_id))
