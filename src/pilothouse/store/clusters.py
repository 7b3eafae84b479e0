"""The cluster registry's persistence: cluster rows and their encrypted secrets.

``ClusterStore`` is the only way the rest of Pilothouse reads or writes
cluster records. It returns plain ``ClusterRecord`` values (not ORM objects),
so callers never hold a session open. Secrets are sealed with ``SecretBox``
bound to the cluster's id and the secret's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pilothouse import errors
from pilothouse.store.db import Database
from pilothouse.store.models import ClusterRow, SecretRow, utcnow
from pilothouse.store.secrets import SecretBox


@dataclass(frozen=True)
class ClusterRecord:
    id: str
    name: str
    provider: str
    desired_state: str
    phase: str
    message: str
    kubernetes_version: str
    server_url: str
    spec: dict[str, Any]
    runtime: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    secret_names: tuple[str, ...] = field(default=())
    lease_holder: str | None = None
    lease_expires_at: datetime | None = None

    @classmethod
    def from_row(cls, row: ClusterRow, secret_names: tuple[str, ...] = ()) -> ClusterRecord:
        return cls(
            id=row.id,
            name=row.name,
            provider=row.provider,
            desired_state=row.desired_state,
            phase=row.phase,
            message=row.message,
            kubernetes_version=row.kubernetes_version,
            server_url=row.server_url,
            spec=dict(row.spec or {}),
            runtime=dict(row.runtime or {}),
            created_at=row.created_at,
            updated_at=row.updated_at,
            secret_names=secret_names,
            lease_holder=row.lease_holder,
            lease_expires_at=row.lease_expires_at,
        )


_UPDATABLE = {"desired_state", "phase", "message", "kubernetes_version", "server_url", "spec", "runtime"}


class ClusterStore:
    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db = db
        self.box = box

    def _row(self, session: Session, name: str) -> ClusterRow:
        row = session.scalars(select(ClusterRow).where(ClusterRow.name == name)).one_or_none()
        if row is None:
            raise errors.NotFound(
                f"no cluster named {name!r}", hint="see `pilothouse cluster list`", cluster=name
            )
        return row

    def _secret_names(self, session: Session, cluster_id: str) -> tuple[str, ...]:
        names = session.scalars(select(SecretRow.name).where(SecretRow.owner == _owner(cluster_id))).all()
        return tuple(sorted(names))

    def add(
        self,
        *,
        name: str,
        provider: str,
        desired_state: str,
        phase: str,
        kubernetes_version: str = "",
        server_url: str = "",
        spec: dict[str, Any] | None = None,
        runtime: dict[str, Any] | None = None,
        message: str = "",
        secrets: dict[str, bytes] | None = None,
        lease: tuple[str, datetime] | None = None,
    ) -> ClusterRecord:
        """Insert a cluster (and its secrets) in one transaction; ``AlreadyExists`` on a taken name."""
        try:
            with self.db.session() as session:
                row = ClusterRow(
                    name=name,
                    provider=provider,
                    desired_state=desired_state,
                    phase=phase,
                    message=message,
                    kubernetes_version=kubernetes_version,
                    server_url=server_url,
                    spec=spec or {},
                    runtime=runtime or {},
                    lease_holder=lease[0] if lease else None,
                    lease_expires_at=lease[1] if lease else None,
                )
                session.add(row)
                session.flush()
                for secret_name, value in (secrets or {}).items():
                    session.add(
                        SecretRow(
                            owner=_owner(row.id),
                            name=secret_name,
                            ciphertext=self.box.seal(_owner(row.id), secret_name, value),
                        )
                    )
                session.flush()
                return ClusterRecord.from_row(row, tuple(sorted(secrets or {})))
        except IntegrityError:
            raise errors.AlreadyExists(
                f"a cluster named {name!r} already exists",
                hint="choose another name, or delete the existing cluster first",
                cluster=name,
            ) from None

    def get(self, name: str) -> ClusterRecord:
        with self.db.session() as session:
            row = self._row(session, name)
            return ClusterRecord.from_row(row, self._secret_names(session, row.id))

    def find(self, name: str) -> ClusterRecord | None:
        try:
            return self.get(name)
        except errors.NotFound:
            return None

    def clusters(self) -> list[ClusterRecord]:
        with self.db.session() as session:
            rows = session.scalars(select(ClusterRow).order_by(ClusterRow.name)).all()
            names: dict[str, list[str]] = {}
            for owner, secret_name in session.execute(select(SecretRow.owner, SecretRow.name)):
                names.setdefault(owner, []).append(secret_name)
            return [ClusterRecord.from_row(r, tuple(sorted(names.get(_owner(r.id), ())))) for r in rows]

    def update(self, name: str, **changes: Any) -> ClusterRecord:
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        with self.db.session() as session:
            row = self._row(session, name)
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            session.flush()
            return ClusterRecord.from_row(row, self._secret_names(session, row.id))

    def acquire_lease(
        self, name: str, holder: str, *, now: datetime, ttl: timedelta, steal_from: str | None = None
    ) -> bool:
        """Take (or renew) the cluster's lease for ``holder``; False if someone else holds a live one.

        One conditional UPDATE, so two processes racing for the lease cannot both win on
        either backend. ``steal_from`` takes over a lease whose holder is known to be dead.
        """
        free = or_(
            ClusterRow.lease_holder.is_(None),
            ClusterRow.lease_holder == holder,
            ClusterRow.lease_expires_at.is_(None),
            ClusterRow.lease_expires_at < now,
        )
        if steal_from is not None:
            free = or_(free, ClusterRow.lease_holder == steal_from)
        with self.db.session() as session:
            result = session.execute(
                update(ClusterRow)
                .where(ClusterRow.name == name, free)
                .values(lease_holder=holder, lease_expires_at=now + ttl)
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(result, "rowcount", 0) == 1)

    def release_lease(self, name: str, holder: str) -> None:
        with self.db.session() as session:
            session.execute(
                update(ClusterRow)
                .where(ClusterRow.name == name, ClusterRow.lease_holder == holder)
                .values(lease_holder=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )

    def put_secret(self, name: str, secret_name: str, value: bytes) -> None:
        with self.db.session() as session:
            row = self._row(session, name)
            owner = _owner(row.id)
            existing = session.scalars(
                select(SecretRow).where(SecretRow.owner == owner, SecretRow.name == secret_name)
            ).one_or_none()
            sealed = self.box.seal(owner, secret_name, value)
            if existing is None:
                session.add(SecretRow(owner=owner, name=secret_name, ciphertext=sealed))
            else:
                existing.ciphertext = sealed

    def get_secret(self, name: str, secret_name: str) -> bytes:
        with self.db.session() as session:
            row = self._row(session, name)
            owner = _owner(row.id)
            secret = session.scalars(
                select(SecretRow).where(SecretRow.owner == owner, SecretRow.name == secret_name)
            ).one_or_none()
            if secret is None:
                raise errors.NotFound(
                    f"cluster {name!r} has no stored {secret_name}",
                    hint="re-import the cluster or recreate it",
                )
            return self.box.open(owner, secret_name, secret.ciphertext)

    def remove(self, name: str) -> None:
        with self.db.session() as session:
            row = self._row(session, name)
            session.execute(delete(SecretRow).where(SecretRow.owner == _owner(row.id)))
            session.delete(row)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.db.session() as session:
            yield session


def _owner(cluster_id: str) -> str:
    return f"cluster:{cluster_id}"
