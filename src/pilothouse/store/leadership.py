"""Leadership of singleton background jobs among Pilothouse replicas sharing one store.

Some background jobs must run in exactly one replica: evaluating alerts (two
evaluators would notify twice), recording health probes (two probers would
double the samples the SLA is computed from), compacting and pruning. Every
replica runs the same jobs; ``Leadership.held()`` tells a pass whether this
replica leads, trying to become leader when nobody does.

The lock is one the operating system or the database releases by itself when
its holder dies, so there is no lease to expire and no split brain after a
crash:

- **PostgreSQL**: a session-level advisory lock (``pg_try_advisory_lock``) on a
  connection kept open for it; a replica that dies, or loses that connection,
  loses the lock at once (checked on every call with a round trip).
- **SQLite**: replicas share the database file, so they share a host; an
  exclusive ``flock`` on ``<database>.<name>.leader`` (released by the kernel when the
  process exits, however it exits).

SQLAlchemy provides the PostgreSQL connection; ``fcntl`` the file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path

import structlog
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from pilothouse.store.db import Database

log = structlog.get_logger(__name__)


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_try_advisory_lock``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Leadership:
    """Whether this process leads the replicas sharing ``db`` for ``name``."""

    def __init__(self, db: Database, name: str = "pilothouse-jobs") -> None:
        self.db = db
        self.name = name
        self._backend = db.engine.url.get_backend_name()
        self._connection: Connection | None = None
        self._fd: int | None = None

    def held(self) -> bool:
        """True when this process holds the lock, acquiring it if it is free."""
        was = self._fd is not None or self._connection is not None
        now = self._hold_postgres() if self._backend == "postgresql" else self._hold_file()
        if now != was:
            log.info("leadership.changed", name=self.name, leader=now)
        return now

    def release(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(DBAPIError):
                self._connection.invalidate()  # closes the session itself: the lock goes with it
                self._connection.close()
            self._connection = None
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the flock
            self._fd = None

    # ----- SQLite: a file lock next to the database --------------------------------------

    def _lock_path(self) -> Path:
        database = self.db.engine.url.database
        if not database or database == ":memory:":
            raise ValueError("an in-memory SQLite database has no replicas to lead")
        return Path(f"{database}.{self.name}.leader")

    def _hold_file(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self._lock_path(), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    # ----- PostgreSQL: a session advisory lock ---------------------------------------------

    def _hold_postgres(self) -> bool:
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT 1"))
                self._connection.commit()
                return True
            except DBAPIError:
                log.warning("leadership.connection_lost", name=self.name)
                self.release()
        try:
            connection = self.db.engine.connect()
        except DBAPIError:
            return False
        try:
            acquired = bool(
                connection.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": _lock_key(self.name)}
                ).scalar()
            )
            connection.commit()
        except DBAPIError:
            connection.close()
            return False
        if not acquired:
            connection.close()
            return False
        self._connection = connection
        return True
