"""Where etcd snapshot files live: a local directory or an S3-compatible object store.

A ``BackupStorage`` stores a finished snapshot file under a key
(``<cluster>/<time>-<id>.db``), hands back a local copy to restore from, and
deletes it. Both keep the promise the backup record relies on: a location is
returned only once the whole file is durably stored.

- ``LocalDirectory`` writes into ``Settings.effective_backup_dir`` atomically: the
  snapshot is taken into ``.staging/`` on the same filesystem, fsynced, renamed
  into place, and the directory fsynced; an interrupted write leaves only a
  ``.staging`` file, never a partial snapshot under its final name.
- ``S3Bucket`` uploads with boto3 (multipart for large files) to any S3-compatible
  endpoint, records the sha256 as object metadata, and checks the stored size
  before reporting success; a download goes to a ``.part`` file renamed when
  complete. Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID`` …,
  ``~/.aws/credentials``), never from Pilothouse's own config.

The file's checksum is verified by the caller (``fleet.backups``) before any
restore, whichever store it came from.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from pilothouse import errors
from pilothouse.atomic_files import fsync_dir, fsync_file
from pilothouse.vocabulary import BackupStorageKind

_CHUNK = 1024 * 1024


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class BackupStorage(Protocol):
    kind: BackupStorageKind

    def put(self, source: Path, key: str, *, sha256: str) -> str:
        """Store ``source`` (consumed) under ``key``; return its location once durable."""
        ...

    def local_copy(self, location: str, scratch: Path) -> Path:
        """A local file with the stored bytes (the file itself, or a download into ``scratch``)."""
        ...

    def delete(self, location: str) -> None:
        """Remove the stored file; nothing happens if it is already gone."""
        ...


class LocalDirectory:
    """Snapshots in a directory on this machine."""

    kind = BackupStorageKind.LOCAL

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def staging(self) -> Path:
        """Where snapshots are taken before they are stored (same filesystem as ``root``)."""
        path = self.root / ".staging"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def put(self, source: Path, key: str, *, sha256: str) -> str:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fsync_file(source)
        if source.stat().st_dev != target.parent.stat().st_dev:
            copy = target.with_name(f".{target.name}.part")
            shutil.copyfile(source, copy)
            fsync_file(copy)
            source.unlink()
            source = copy
        source.rename(target)
        fsync_dir(target.parent)
        return str(target)

    def local_copy(self, location: str, scratch: Path) -> Path:
        path = Path(location)
        if not path.is_file():
            raise errors.NotFound(
                f"the snapshot file {path} is gone",
                hint="restore another backup (`pilothouse backup list`) or take a new one",
            )
        return path

    def delete(self, location: str) -> None:
        Path(location).unlink(missing_ok=True)


class S3Bucket:
    """Snapshots in a bucket of an S3-compatible store (boto3)."""

    kind = BackupStorageKind.S3

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
    ) -> None:
        if not bucket:
            raise errors.InvalidInput(
                "backup_storage is s3 but no bucket is configured",
                hint="set backup_s3_bucket (and backup_s3_endpoint_url for a non-AWS store)",
            )
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self._client = client
        self.region = region

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                config=Config(
                    retries={"max_attempts": 5, "mode": "standard"},
                    s3={"addressing_style": "path"},
                    # S3-compatible stores do not all accept the newer default checksums
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _parse(self, location: str) -> tuple[str, str]:
        parsed = urlparse(location)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise errors.InvalidInput(
                f"{location!r} is not an s3:// location", hint="check the backup record"
            )
        return parsed.netloc, parsed.path.lstrip("/")

    def put(self, source: Path, key: str, *, sha256: str) -> str:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        object_key = self._key(key)
        size = source.stat().st_size
        try:
            self.client.upload_file(
                str(source), self.bucket, object_key, ExtraArgs={"Metadata": {"sha256": sha256}}
            )
            head = self.client.head_object(Bucket=self.bucket, Key=object_key)
        except (Boto3Error, BotoCoreError, ClientError) as exc:
            raise _s3_error(f"uploading to s3://{self.bucket}/{object_key}", exc) from None
        finally:
            source.unlink(missing_ok=True)
        if int(head["ContentLength"]) != size:
            raise errors.ChecksumMismatch(
                f"s3://{self.bucket}/{object_key} holds {head['ContentLength']} bytes after the upload, "
                f"not {size}",
                hint="check the S3 endpoint; the backup was not recorded as completed",
            )
        return f"s3://{self.bucket}/{object_key}"

    def local_copy(self, location: str, scratch: Path) -> Path:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = self._parse(location)
        scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = scratch / Path(key).name
        part = target.with_name(f"{target.name}.part")
        try:
            self.client.download_file(bucket, key, str(part))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise errors.NotFound(
                    f"the snapshot {location} is gone from the bucket",
                    hint="restore another backup (`pilothouse backup list`) or take a new one",
                ) from None
            raise _s3_error(f"downloading {location}", exc) from None
        except BotoCoreError as exc:
            raise _s3_error(f"downloading {location}", exc) from None
        part.rename(target)
        return target

    def delete(self, location: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = self._parse(location)
        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise _s3_error(f"deleting {location}", exc) from None


def _s3_error(what: str, exc: Exception) -> errors.PilothouseError:
    return errors.PilothouseError(
        f"{what} failed: {type(exc).__name__}: {str(exc)[:300]}",
        hint="check backup_s3_endpoint_url, the bucket, and the AWS credentials in the environment",
    )
