"""API tokens: issued once, stored as SHA-256 digests, checked in constant time.

Tokens are 256-bit random values (``secrets.token_urlsafe``) with a ``ph_``
prefix, so a fast digest is safe (no dictionary to attack) and lookups are
by digest. Only the digest and an 8-character display prefix are stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from pilothouse import errors
from pilothouse.store.db import Database
from pilothouse.store.models import ApiTokenRow

TOKEN_PREFIX = "ph_"  # noqa: S105 - a format prefix, not a secret


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    prefix: str
    roles: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


def _info(row: ApiTokenRow) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        roles=tuple(r for r in row.roles.split(",") if r),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


class TokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def issue(
        self, name: str, roles: tuple[str, ...], *, expires_at: datetime | None = None
    ) -> tuple[str, TokenInfo]:
        """Create a token; the plaintext is returned once and never stored."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            with self.db.session() as session:
                row = ApiTokenRow(
                    name=name,
                    digest=digest(token),
                    prefix=token[:8],
                    roles=",".join(roles),
                    expires_at=expires_at,
                )
                session.add(row)
                session.flush()
                return token, _info(row)
        except IntegrityError:
            raise errors.AlreadyExists(
                f"a token named {name!r} already exists", hint="choose another name"
            ) from None

    def list(self) -> list[TokenInfo]:
        with self.db.session() as session:
            return [_info(row) for row in session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.name))]

    def count(self) -> int:
        with self.db.session() as session:
            return len(session.scalars(select(ApiTokenRow.id)).all())

    def authenticate(self, token: str, *, now: datetime) -> TokenInfo:
        """The token's info; ``Unauthenticated`` if unknown, revoked or expired."""
        wanted = digest(token)
        with self.db.session() as session:
            row = session.scalars(select(ApiTokenRow).where(ApiTokenRow.digest == wanted)).one_or_none()
            if row is None or not hmac.compare_digest(row.digest, wanted):
                raise errors.Unauthenticated("the bearer token is not valid", hint="check the token you sent")
            if row.revoked_at is not None:
                raise errors.Unauthenticated(
                    f"the token {row.prefix}… was revoked", hint="ask for a new token"
                )
            expires = row.expires_at
            if expires is not None and _aware(expires) <= now:
                raise errors.Unauthenticated(
                    f"the token {row.prefix}… has expired", hint="ask for a new token"
                )
            return _info(row)

    def revoke(self, name: str, *, now: datetime) -> None:
        with self.db.session() as session:
            row = session.scalars(select(ApiTokenRow).where(ApiTokenRow.name == name)).one_or_none()
            if row is None:
                raise errors.NotFound(f"no token named {name!r}")
            row.revoked_at = now


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; they were stored as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
