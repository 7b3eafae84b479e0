"""Pending single sign-on logins in the database: the state of a login between start and callback.

``PendingLoginTable`` is the only way Pilothouse reads or writes ``sso_pending_logins``
(migration 0009); ``identity.oidc.StoredPendingLogins`` adapts it to the
``PendingLoginStore`` that ``OidcClient`` uses, so a callback may land on any process
sharing the database. SQLAlchemy does the SQL; the platform's ``SecretBox`` (Fernet)
seals the secrets.

- A row is keyed by the SHA-256 of the login's ``state``: the state itself, which
  only the browser holds, is never stored.
- ``nonce`` and ``code_verifier`` are sealed, each bound to its row's digest and
  its own name, so neither a copied database nor a swapped ciphertext yields them.
- ``take`` is one ``DELETE … RETURNING`` (SQLite ≥ 3.35, PostgreSQL): of two
  callbacks carrying the same state, exactly one gets the login.
- Expired rows are removed opportunistically: every ``save`` first deletes the
  logins whose time is up, and the table is capped (``max_rows``; the oldest
  pending logins make way), because ``save`` runs for unauthenticated callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, func, select

from pilothouse.store.db import Database
from pilothouse.store.models import SsoPendingLoginRow
from pilothouse.store.secrets import SecretBox

#: Pending logins kept at most; past this, the oldest are dropped (their users start again).
DEFAULT_MAX_ROWS = 10_000
_NONCE = "nonce"
_VERIFIER = "code_verifier"


@dataclass(frozen=True)
class PendingLoginRecord:
    """A pending login as stored, secrets in the clear (only in memory)."""

    state_digest: str
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)
    redirect_uri: str
    created_at: datetime
    expires_at: datetime


def _owner(state_digest: str) -> str:
    return f"sso-login:{state_digest}"


class PendingLoginTable:
    def __init__(self, db: Database, box: SecretBox, *, max_rows: int = DEFAULT_MAX_ROWS) -> None:
        self.db = db
        self.box = box
        self.max_rows = max_rows

    def save(self, record: PendingLoginRecord) -> None:
        """Store a new pending login (after removing expired ones, and the oldest when full)."""
        owner = _owner(record.state_digest)
        row = SsoPendingLoginRow(
            state_digest=record.state_digest,
            nonce=self.box.seal(owner, _NONCE, record.nonce.encode()),
            code_verifier=self.box.seal(owner, _VERIFIER, record.code_verifier.encode()),
            redirect_uri=record.redirect_uri,
            created_at=record.created_at,
            expires_at=record.expires_at,
        )
        with self.db.session() as session:
            session.execute(
                delete(SsoPendingLoginRow).where(SsoPendingLoginRow.expires_at <= record.created_at)
            )
            pending = session.scalar(select(func.count()).select_from(SsoPendingLoginRow)) or 0
            if pending >= self.max_rows:
                oldest = (
                    select(SsoPendingLoginRow.state_digest)
                    .order_by(SsoPendingLoginRow.created_at)
                    .limit(pending - self.max_rows + 1)
                    .scalar_subquery()
                )
                session.execute(delete(SsoPendingLoginRow).where(SsoPendingLoginRow.state_digest.in_(oldest)))
            session.add(row)

    def take(self, state_digest: str) -> PendingLoginRecord | None:
        """Remove and return the login stored under ``state_digest``, atomically; None if there is none."""
        statement = (
            delete(SsoPendingLoginRow)
            .where(SsoPendingLoginRow.state_digest == state_digest)
            .returning(
                SsoPendingLoginRow.nonce,
                SsoPendingLoginRow.code_verifier,
                SsoPendingLoginRow.redirect_uri,
                SsoPendingLoginRow.created_at,
                SsoPendingLoginRow.expires_at,
            )
        )
        with self.db.session() as session:
            found = session.execute(statement).one_or_none()
        if found is None:
            return None
        nonce, verifier, redirect_uri, created_at, expires_at = found
        owner = _owner(state_digest)
        return PendingLoginRecord(
            state_digest=state_digest,
            nonce=self.box.open(owner, _NONCE, nonce).decode(),
            code_verifier=self.box.open(owner, _VERIFIER, verifier).decode(),
            redirect_uri=redirect_uri,
            created_at=created_at,
            expires_at=expires_at,
        )

    def delete_expired(self, now: datetime) -> int:
        """Remove the logins whose time is up; how many."""
        with self.db.session() as session:
            result = session.execute(delete(SsoPendingLoginRow).where(SsoPendingLoginRow.expires_at <= now))
            return int(getattr(result, "rowcount", 0) or 0)

    def count(self) -> int:
        with self.db.session() as session:
            return int(session.scalar(select(func.count()).select_from(SsoPendingLoginRow)) or 0)
