"""Tests for the local backup directory (fleet.backup_storage) and backup records (store.backups)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse import errors
from pilothouse.fleet.backup_storage import LocalDirectory, sha256_file
from pilothouse.store.backups import BackupStore
from pilothouse.store.db import Database
from pilothouse.store.secrets import SecretBox
from pilothouse.vocabulary import BackupStatus, BackupStorageKind, BackupTrigger


def test_local_directory_stores_by_rename_and_leaves_nothing_behind(tmp_path: Path) -> None:
    storage = LocalDirectory(tmp_path / "backups")
    taken = storage.staging / "abc.db"
    taken.write_bytes(b"snapshot" * 1000)
    digest = sha256_file(taken)
    location = storage.put(taken, "prod/20261125T100000Z-abc.db", sha256=digest)
    assert location == str(tmp_path / "backups" / "prod" / "20261125T100000Z-abc.db")
    assert not taken.exists()
    assert list(storage.staging.iterdir()) == []
    assert storage.local_copy(location, tmp_path / "scratch") == Path(location)
    assert sha256_file(Path(location)) == digest
    storage.delete(location)
    storage.delete(location)  # already gone: nothing happens
    with pytest.raises(errors.NotFound, match="is gone"):
        storage.local_copy(location, tmp_path / "scratch")


@pytest.fixture
def store(tmp_path: Path) -> BackupStore:
    db = Database(f"sqlite:///{tmp_path / 'p.db'}")
    db.migrate()
    return BackupStore(db, SecretBox.from_file(tmp_path / "secret.key"))


def _begin(store: BackupStore, cluster: str = "prod", **extra: object) -> str:
    return store.begin(
        cluster,
        trigger=BackupTrigger.MANUAL,
        storage=BackupStorageKind.LOCAL,
        kubernetes_version="1.36.3",
        etcd_version="3.6.16",
        control_planes=1,
        holder="host|1|1.0|x",
        **extra,  # type: ignore[arg-type]
    ).id


def test_backup_records_complete_with_a_sealed_encryption_config(store: BackupStore) -> None:
    backup_id = _begin(store)
    assert store.get(backup_id).status is BackupStatus.RUNNING
    with pytest.raises(errors.NotFound, match="never completed"):
        store.encryption_config(backup_id)
    done = store.complete(
        backup_id,
        location="/b/prod.db",
        size_bytes=12,
        sha256="a" * 64,
        etcd_revision=77,
        total_keys=9,
        encryption_config=b"kind: EncryptionConfiguration",
    )
    assert (done.status, done.etcd_revision, done.holder) == (BackupStatus.COMPLETED, 77, None)
    assert store.encryption_config(backup_id) == b"kind: EncryptionConfiguration"
    assert store.resolve(backup_id[:6]).id == backup_id
    store.remove(backup_id)
    with pytest.raises(errors.NotFound, match="no backup"):
        store.get(backup_id)
    with pytest.raises(errors.NotFound, match="no encryption config"):
        store.encryption_config(backup_id)


def test_last_scheduled_slot_and_listing(store: BackupStore) -> None:
    from datetime import UTC, datetime, timedelta

    slot = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert store.last_scheduled_slot("prod", "hourly") is None
    _begin(store, schedule="hourly", scheduled_for=slot)
    failed = _begin(store, schedule="hourly", scheduled_for=slot + timedelta(hours=1))
    store.fail(failed, "etcd was down")
    _begin(store, "other", schedule="hourly", scheduled_for=slot + timedelta(hours=5))
    assert store.last_scheduled_slot("prod", "hourly") == slot + timedelta(hours=1)
    assert [b.status for b in store.list(cluster="prod")] == [BackupStatus.FAILED, BackupStatus.RUNNING]
    assert len(store.list(statuses=[BackupStatus.RUNNING])) == 2
