"""Cluster leases: one Pilothouse process operates on a cluster at a time.

Every operation that changes a cluster (create, start, stop, delete, a
reconcile pass) holds the cluster's lease in the store while it runs and
renews it in the background; a CLI command and a running ``pilothouse up``
(or several replicas on one database) therefore never act on the same cluster
at once. A lease names its holder as ``host|pid|start-time|nonce``: a lease
whose holder process is gone from this host is taken over at once, any other
one only after it expires, so work a crashed process left is resumed quickly
and never twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psutil
import structlog

from pilothouse import errors
from pilothouse.store.clusters import ClusterRecord, ClusterStore

log = structlog.get_logger(__name__)

LEASE_TTL = timedelta(seconds=30)


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    started: float
    nonce: str

    def __str__(self) -> str:
        return f"{self.host}|{self.pid}|{self.started:.3f}|{self.nonce}"

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        parts = text.split("|")
        if len(parts) != 4:
            return None
        try:
            return cls(host=parts[0], pid=int(parts[1]), started=float(parts[2]), nonce=parts[3])
        except ValueError:
            return None

    @classmethod
    def of_this_process(cls) -> Holder:
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            started=psutil.Process().create_time(),
            nonce=uuid.uuid4().hex[:8],
        )


def holder_is_dead(text: str) -> bool:
    """True when the holder ran on this host and its process is gone (or its PID was reused)."""
    holder = Holder.parse(text)
    if holder is None or holder.host != socket.gethostname():
        return False
    try:
        return abs(psutil.Process(holder.pid).create_time() - holder.started) > 0.01
    except psutil.NoSuchProcess:
        return True


def describe(text: str) -> str:
    holder = Holder.parse(text)
    return f"process {holder.pid} on {holder.host}" if holder else text


class Leases:
    """Acquires, renews and releases cluster leases for this process."""

    def __init__(self, store: ClusterStore, *, ttl: timedelta = LEASE_TTL) -> None:
        self.store = store
        self.ttl = ttl
        self.holder = str(Holder.of_this_process())
        self._active: set[str] = set()  # clusters an operation of this process is working on

    def initial(self, name: str, now: datetime | None = None) -> tuple[str, datetime]:
        """The lease a newly added record starts with; the operation that follows must ``hold``
        it with ``reserved=True``."""
        self._active.add(name)
        return self.holder, (now or datetime.now(UTC)) + self.ttl

    def forget(self, name: str) -> None:
        """Drop the reservation ``initial`` made when the record was never written."""
        self._active.discard(name)

    def busy(self, record: ClusterRecord, now: datetime) -> bool:
        """True when another operation (of this process, or of another live holder) owns ``record``."""
        if record.name in self._active:
            return True
        if record.lease_holder is None or record.lease_holder == self.holder:
            return False
        if record.lease_expires_at is None or record.lease_expires_at < now:
            return False
        return not holder_is_dead(record.lease_holder)

    def acquire(self, name: str, *, now: datetime | None = None) -> None:
        moment = now or datetime.now(UTC)
        record = self.store.get(name)
        steal = record.lease_holder if record.lease_holder and holder_is_dead(record.lease_holder) else None
        if steal is not None:
            log.info("lease.takeover", cluster=name, dead_holder=describe(steal))
        if not self.store.acquire_lease(name, self.holder, now=moment, ttl=self.ttl, steal_from=steal):
            current = self.store.get(name)
            raise errors.Conflict(
                f"cluster {name!r} is busy: {describe(current.lease_holder or '?')} is operating on it",
                hint="wait for that operation to finish (see `pilothouse cluster show`), then retry",
                cluster=name,
            )

    @contextlib.asynccontextmanager
    async def hold(
        self, name: str, *, now: datetime | None = None, reserved: bool = False
    ) -> AsyncIterator[None]:
        """Hold the lease for the duration of the block, renewing it in the background.

        Within this process too, one operation at a time: a second ``hold`` of the same
        cluster raises ``Conflict`` rather than running two operations side by side.
        """
        if name in self._active and not reserved:
            raise errors.Conflict(
                f"cluster {name!r} is busy: another operation of this Pilothouse is working on it",
                hint="wait for it to finish, then retry",
                cluster=name,
            )
        self.acquire(name, now=now)
        self._active.add(name)

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.ttl.total_seconds() / 3)
                with contextlib.suppress(errors.NotFound):
                    self.store.acquire_lease(name, self.holder, now=datetime.now(UTC), ttl=self.ttl)

        renewer = asyncio.create_task(renew(), name=f"lease:{name}")
        try:
            yield
        finally:
            self._active.discard(name)
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            with contextlib.suppress(errors.NotFound):
                self.store.release_lease(name, self.holder)
