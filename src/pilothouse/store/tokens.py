"""API tokens: issued once, stored as SHA-256 digests, checked in constant time.

Tokens are 256-bit random values (``secrets.token_urlsafe``) with a ``ph_``
prefix, so a fast digest is safe (no dictionary to attack) and lookups are
by digest. Only the digest and an 8-character display prefix are stored.

A token carries *grants*: roles at scopes (``TokenGrant``: role, cluster,
namespace; empty strings widen the scope), and optionally an *owner* user,
whose own access the grants then only narrow (``identity.policy``). Tokens
issued with bare ``roles`` hold them at the platform scope. User sessions
(``store.identity``) use the same digest scheme with a ``phs_`` prefix.
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
from pilothouse.store.models import ApiTokenRow, UserRow

TOKEN_PREFIX = "ph_"  # noqa: S105 - a format prefix, not a secret


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_bearer(prefix: str) -> str:
    """A fresh 256-bit bearer secret with a recognisable prefix."""
    return prefix + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class TokenGrant:
    """A role at a scope: no cluster → the platform; a cluster and a namespace → that namespace."""

    role: str
    cluster: str = ""
    namespace: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "cluster": self.cluster, "namespace": self.namespace}


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    prefix: str
    roles: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    grants: tuple[TokenGrant, ...] = ()
    owner: str | None = None  # the owning user's name


def _grants(row: ApiTokenRow) -> tuple[TokenGrant, ...]:
    if row.grants is None:
        return tuple(TokenGrant(r) for r in row.roles.split(",") if r)
    return tuple(
        TokenGrant(str(g.get("role", "")), str(g.get("cluster", "")), str(g.get("namespace", "")))
        for g in row.grants
    )


def _info(row: ApiTokenRow, owner: str | None) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        roles=tuple(r for r in row.roles.split(",") if r),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        grants=_grants(row),
        owner=owner,
    )


class TokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def issue(
        self,
        name: str,
        roles: tuple[str, ...] = (),
        *,
        expires_at: datetime | None = None,
        grants: tuple[TokenGrant, ...] | None = None,
        owner: str | None = None,
    ) -> tuple[str, TokenInfo]:
        """Create a token; the plaintext is returned once and never stored.

        ``roles`` are held at the platform scope; ``grants`` (if given) replace them with
        scoped roles. ``owner`` names the user the token acts for (``NotFound`` if unknown).
        """
        token = new_bearer(TOKEN_PREFIX)
        scoped = grants if grants is not None else tuple(TokenGrant(r) for r in roles)
        role_names = list(dict.fromkeys(g.role for g in scoped))
        try:
            with self.db.session() as session:
                owner_id = None
                if owner is not None:
                    owner_id = session.scalars(select(UserRow.id).where(UserRow.name == owner)).one_or_none()
                    if owner_id is None:
                        raise errors.NotFound(
                            f"no user named {owner!r}", hint="`pilothouse user list` shows users"
                        )
                row = ApiTokenRow(
                    name=name,
                    digest=digest(token),
                    prefix=token[:8],
                    roles=",".join(role_names),
                    expires_at=expires_at,
                    grants=[g.to_dict() for g in scoped],
                    owner_id=owner_id,
                )
                session.add(row)
                session.flush()
                return token, _info(row, owner)
        except IntegrityError:
            raise errors.AlreadyExists(
                f"a token named {name!r} already exists", hint="choose another name"
            ) from None

    def list(self, *, owner: str | None = None) -> list[TokenInfo]:
        """Every token (or one user's), by name."""
        query = (
            select(ApiTokenRow, UserRow.name)
            .outerjoin(UserRow, UserRow.id == ApiTokenRow.owner_id)
            .order_by(ApiTokenRow.name)
        )
        if owner is not None:
            query = query.where(UserRow.name == owner)
        with self.db.session() as session:
            return [_info(row, owner_name) for row, owner_name in session.execute(query)]

    def count(self) -> int:
        with self.db.session() as session:
            return len(session.scalars(select(ApiTokenRow.id)).all())

    def authenticate(self, token: str, *, now: datetime) -> TokenInfo:
        """The token's info; ``Unauthenticated`` if unknown, revoked or expired."""
        wanted = digest(token)
        with self.db.session() as session:
            found = session.execute(
                select(ApiTokenRow, UserRow.name)
                .outerjoin(UserRow, UserRow.id == ApiTokenRow.owner_id)
                .where(ApiTokenRow.digest == wanted)
            ).one_or_none()
            if found is None or not hmac.compare_digest(found[0].digest, wanted):
                raise errors.Unauthenticated("the bearer token is not valid", hint="check the token you sent")
            row, owner = found
            if row.revoked_at is not None:
                raise errors.Unauthenticated(
                    f"the token {row.prefix}… was revoked", hint="ask for a new token"
                )
            expires = row.expires_at
            if expires is not None and _aware(expires) <= now:
                raise errors.Unauthenticated(
                    f"the token {row.prefix}… has expired", hint="ask for a new token"
                )
            return _info(row, owner)

    def get(self, name: str) -> TokenInfo:
        with self.db.session() as session:
            found = session.execute(
                select(ApiTokenRow, UserRow.name)
                .outerjoin(UserRow, UserRow.id == ApiTokenRow.owner_id)
                .where(ApiTokenRow.name == name)
            ).one_or_none()
            if found is None:
                raise errors.NotFound(f"no token named {name!r}", hint="`pilothouse token list` shows tokens")
            return _info(*found)

    def revoke(self, name: str, *, now: datetime) -> None:
        with self.db.session() as session:
            row = session.scalars(select(ApiTokenRow).where(ApiTokenRow.name == name)).one_or_none()
            if row is None:
                raise errors.NotFound(f"no token named {name!r}", hint="`pilothouse token list` shows tokens")
            if row.revoked_at is None:
                row.revoked_at = now


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; they were stored as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
