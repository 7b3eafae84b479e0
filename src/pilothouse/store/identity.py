"""Users, teams, role bindings, sessions, MFA material and login throttling in the store.

SQLAlchemy does the SQL; this module stores what ``identity.accounts``
decides and returns plain frozen records (role and scope names as strings:
the store sits below ``identity.policy``). What is kept of each secret:

| secret | stored as |
|---|---|
| password | Argon2id hash (``identity.passwords``) |
| TOTP secret | sealed with the ``SecretBox`` (Fernet), bound to ``user:<id>``/``totp``: it must be read back to check codes |
| recovery codes | SHA-256 digests, each spent once |
| session tokens | SHA-256 digests (``phs_`` + 256 random bits), as API tokens (``store.tokens``) |

Two updates are conditional so that concurrent requests cannot both win:
advancing the last accepted TOTP step (a replayed code updates no row) and
spending a recovery code.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from pilothouse import errors
from pilothouse.store.db import Database
from pilothouse.store.models import (
    ApiTokenRow,
    LoginThrottleRow,
    RecoveryCodeRow,
    RoleBindingRow,
    SessionRow,
    TeamMemberRow,
    TeamRow,
    UserRow,
)
from pilothouse.store.secrets import SecretBox
from pilothouse.store.tokens import digest, new_bearer

SESSION_PREFIX = "phs_"
LOCAL_SOURCE = "local"


# ----- records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserRecord:
    id: str
    name: str
    display_name: str
    email: str
    source: str
    external_id: str | None
    has_password: bool
    #: ``off``, ``pending`` (enrolled, not yet confirmed with a code) or ``on``.
    mfa: str
    teams: tuple[str, ...]
    disabled_at: datetime | None
    created_at: datetime
    password_changed_at: datetime | None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


@dataclass(frozen=True)
class LoginSubject:
    """What a login needs to check a user's credentials (the TOTP secret decrypted)."""

    id: str
    name: str
    password_hash: str | None
    disabled: bool
    totp_secret: str | None
    totp_enabled: bool
    totp_last_step: int | None
    #: Teams of the user that require a second factor.
    mfa_required_by: tuple[str, ...]


@dataclass(frozen=True)
class TeamRecord:
    id: str
    name: str
    mfa_required: bool
    members: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True)
class Removed:
    """What went with a deleted user or team (counted in the deleting transaction)."""

    name: str
    bindings: int
    sessions: int = 0
    tokens: int = 0
    memberships: int = 0


@dataclass(frozen=True)
class BindingRecord:
    id: str
    subject_kind: str  # "user" | "team"
    subject: str
    role: str
    cluster: str  # "" → platform
    namespace: str  # "" → the whole cluster
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class UserAccess:
    """A user, their teams and every binding that reaches them (their own and their teams')."""

    user: UserRecord
    bindings: tuple[BindingRecord, ...]


@dataclass(frozen=True)
class SessionRecord:
    id: str
    user: str
    prefix: str
    method: str
    client: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and self.expires_at > now


@dataclass(frozen=True)
class AttemptsRow:
    failures: int
    last_failure_at: datetime | None
    locked_until: datetime | None


# ----- the store ------------------------------------------------------------------------------


def _mfa_state(row: UserRow) -> str:
    if row.totp_secret is None:
        return "off"
    return "on" if row.totp_enabled_at is not None else "pending"


def _count(
    session: Session, column: InstrumentedAttribute[str] | InstrumentedAttribute[str | None], value: str
) -> int:
    return session.scalar(select(func.count()).where(column == value)) or 0


def _binding_key(user_id: str | None, team_id: str | None, role: str, cluster: str, namespace: str) -> str:
    subject = f"user:{user_id}" if user_id else f"team:{team_id}"
    return f"{subject}|{role}|{cluster}|{namespace}"


class IdentityStore:
    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db = db
        self.box = box

    # --- users ---

    def _user_row(self, session: Session, name: str) -> UserRow:
        row = session.scalars(select(UserRow).where(UserRow.name == name)).one_or_none()
        if row is None:
            raise errors.NotFound(f"no user named {name!r}", hint="`pilothouse user list` shows users")
        return row

    def _teams_of(self, session: Session, user_ids: Iterable[str]) -> dict[str, tuple[str, ...]]:
        ids = list(user_ids)
        found: dict[str, list[str]] = {i: [] for i in ids}
        if ids:
            query = (
                select(TeamMemberRow.user_id, TeamRow.name)
                .join(TeamRow, TeamRow.id == TeamMemberRow.team_id)
                .where(TeamMemberRow.user_id.in_(ids))
                .order_by(TeamRow.name)
            )
            for user_id, team in session.execute(query):
                found[user_id].append(team)
        return {k: tuple(v) for k, v in found.items()}

    def _record(self, row: UserRow, teams: tuple[str, ...]) -> UserRecord:
        return UserRecord(
            id=row.id,
            name=row.name,
            display_name=row.display_name,
            email=row.email,
            source=row.source,
            external_id=row.external_id,
            has_password=row.password_hash is not None,
            mfa=_mfa_state(row),
            teams=teams,
            disabled_at=row.disabled_at,
            created_at=row.created_at,
            password_changed_at=row.password_changed_at,
        )

    def add_user(
        self,
        name: str,
        *,
        password_hash: str | None,
        display_name: str = "",
        email: str = "",
        source: str = LOCAL_SOURCE,
        external_id: str | None = None,
        now: datetime,
    ) -> UserRecord:
        try:
            with self.db.session() as session:
                row = UserRow(
                    name=name,
                    display_name=display_name,
                    email=email,
                    source=source,
                    external_id=external_id,
                    password_hash=password_hash,
                    password_changed_at=now if password_hash else None,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                session.flush()
                return self._record(row, ())
        except IntegrityError:
            raise errors.AlreadyExists(
                f"a user named {name!r} already exists", hint="choose another name"
            ) from None

    def get_user(self, name: str) -> UserRecord:
        with self.db.session() as session:
            row = self._user_row(session, name)
            return self._record(row, self._teams_of(session, [row.id])[row.id])

    def find_external_user(self, external_id: str) -> UserRecord | None:
        """The user a single sign-on provider knows as ``external_id`` (``<source>|<subject>``)."""
        with self.db.session() as session:
            row = session.scalars(select(UserRow).where(UserRow.external_id == external_id)).one_or_none()
            return None if row is None else self._record(row, self._teams_of(session, [row.id])[row.id])

    def find_user(self, name: str) -> UserRecord | None:
        try:
            return self.get_user(name)
        except errors.NotFound:
            return None

    def list_users(self) -> list[UserRecord]:
        with self.db.session() as session:
            rows = list(session.scalars(select(UserRow).order_by(UserRow.name)))
            teams = self._teams_of(session, [r.id for r in rows])
            return [self._record(r, teams[r.id]) for r in rows]

    def login_subject(self, name: str) -> LoginSubject | None:
        """The user's credentials for a login (None: no such user)."""
        with self.db.session() as session:
            row = session.scalars(select(UserRow).where(UserRow.name == name)).one_or_none()
            if row is None:
                return None
            strict = session.scalars(
                select(TeamRow.name)
                .join(TeamMemberRow, TeamMemberRow.team_id == TeamRow.id)
                .where(TeamMemberRow.user_id == row.id, TeamRow.mfa_required.is_(True))
                .order_by(TeamRow.name)
            ).all()
            secret = None
            if row.totp_secret is not None:
                secret = self.box.open(f"user:{row.id}", "totp", row.totp_secret).decode()
            return LoginSubject(
                id=row.id,
                name=row.name,
                password_hash=row.password_hash,
                disabled=row.disabled_at is not None,
                totp_secret=secret,
                totp_enabled=row.totp_enabled_at is not None,
                totp_last_step=row.totp_last_step,
                mfa_required_by=tuple(strict),
            )

    def set_password_hash(self, name: str, password_hash: str, *, now: datetime) -> None:
        with self.db.session() as session:
            row = self._user_row(session, name)
            row.password_hash = password_hash
            row.password_changed_at = now

    def set_disabled(self, name: str, disabled: bool, *, now: datetime) -> UserRecord:
        """Disable (and sign out everywhere) or enable a user."""
        with self.db.session() as session:
            row = self._user_row(session, name)
            row.disabled_at = (row.disabled_at or now) if disabled else None
            if disabled:
                _revoke_sessions(session, row.id, now=now)
            session.flush()
            return self._record(row, self._teams_of(session, [row.id])[row.id])

    def delete_user(self, name: str) -> Removed:
        """Delete the user and, in the same transaction, everything that is theirs: sessions,
        API tokens, recovery codes, team memberships, role bindings and failed-login records.

        Bindings hang on the user's id, so someone created later under the same name starts
        with nothing.
        """
        with self.db.session() as session:
            row = self._user_row(session, name)
            removed = Removed(
                name=row.name,
                bindings=_count(session, RoleBindingRow.user_id, row.id),
                sessions=_count(session, SessionRow.user_id, row.id),
                tokens=_count(session, ApiTokenRow.owner_id, row.id),
                memberships=_count(session, TeamMemberRow.user_id, row.id),
            )
            # the rows hanging on the user's id go with it: every foreign key is ON DELETE CASCADE
            session.execute(delete(LoginThrottleRow).where(LoginThrottleRow.key == f"user:{row.name}"))
            session.delete(row)
            return removed

    def update_profile(self, name: str, *, display_name: str | None = None, email: str | None = None) -> None:
        with self.db.session() as session:
            row = self._user_row(session, name)
            if display_name is not None:
                row.display_name = display_name
            if email is not None:
                row.email = email

    # --- TOTP and recovery codes ---

    def set_pending_totp(self, name: str, secret: str) -> None:
        """Store a new, not yet confirmed TOTP secret (replacing any pending one)."""
        with self.db.session() as session:
            row = self._user_row(session, name)
            if row.totp_enabled_at is not None:
                raise errors.Conflict(
                    f"user {name!r} already has MFA enabled",
                    hint="disable it first (`pilothouse user mfa disable`)",
                )
            row.totp_secret = self.box.seal(f"user:{row.id}", "totp", secret.encode())
            row.totp_last_step = None

    def enable_totp(self, user_id: str, *, step: int, recovery_digests: Iterable[str], now: datetime) -> bool:
        """Confirm the pending secret with the code of ``step``; store the recovery codes. False if it lost a race."""
        with self.db.session() as session:
            changed = session.execute(
                update(UserRow)
                .where(
                    UserRow.id == user_id, UserRow.totp_secret.is_not(None), UserRow.totp_enabled_at.is_(None)
                )
                .values(totp_enabled_at=now, totp_last_step=step)
            ).rowcount  # type: ignore[attr-defined]  # CursorResult
            if changed != 1:
                return False
            session.execute(delete(RecoveryCodeRow).where(RecoveryCodeRow.user_id == user_id))
            session.add_all(
                RecoveryCodeRow(user_id=user_id, digest=d, created_at=now) for d in recovery_digests
            )
            return True

    def clear_totp(self, name: str) -> None:
        """Remove the second factor and the recovery codes."""
        with self.db.session() as session:
            row = self._user_row(session, name)
            row.totp_secret = None
            row.totp_enabled_at = None
            row.totp_last_step = None
            session.execute(delete(RecoveryCodeRow).where(RecoveryCodeRow.user_id == row.id))

    def use_totp_step(self, user_id: str, step: int) -> bool:
        """Advance the last accepted step to ``step``; False if that step (or a later one) was used."""
        with self.db.session() as session:
            result = session.execute(
                update(UserRow)
                .where(
                    UserRow.id == user_id,
                    or_(UserRow.totp_last_step.is_(None), UserRow.totp_last_step < step),
                )
                .values(totp_last_step=step)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]  # CursorResult

    def use_recovery_code(self, user_id: str, code_digest: str, *, now: datetime) -> bool:
        """Spend a recovery code; False if unknown or already spent."""
        with self.db.session() as session:
            result = session.execute(
                update(RecoveryCodeRow)
                .where(
                    RecoveryCodeRow.user_id == user_id,
                    RecoveryCodeRow.digest == code_digest,
                    RecoveryCodeRow.used_at.is_(None),
                )
                .values(used_at=now)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]  # CursorResult

    def recovery_codes_left(self, name: str) -> int:
        with self.db.session() as session:
            row = self._user_row(session, name)
            return len(
                session.scalars(
                    select(RecoveryCodeRow.id).where(
                        RecoveryCodeRow.user_id == row.id, RecoveryCodeRow.used_at.is_(None)
                    )
                ).all()
            )

    # --- teams ---

    def _team_row(self, session: Session, name: str) -> TeamRow:
        row = session.scalars(select(TeamRow).where(TeamRow.name == name)).one_or_none()
        if row is None:
            raise errors.NotFound(f"no team named {name!r}", hint="`pilothouse team list` shows teams")
        return row

    def _team_record(self, session: Session, row: TeamRow) -> TeamRecord:
        members = session.scalars(
            select(UserRow.name)
            .join(TeamMemberRow, TeamMemberRow.user_id == UserRow.id)
            .where(TeamMemberRow.team_id == row.id)
            .order_by(UserRow.name)
        ).all()
        return TeamRecord(row.id, row.name, row.mfa_required, tuple(members), row.created_at)

    def add_team(self, name: str, *, mfa_required: bool = False, now: datetime) -> TeamRecord:
        try:
            with self.db.session() as session:
                row = TeamRow(name=name, mfa_required=mfa_required, created_at=now)
                session.add(row)
                session.flush()
                return TeamRecord(row.id, row.name, row.mfa_required, (), row.created_at)
        except IntegrityError:
            raise errors.AlreadyExists(
                f"a team named {name!r} already exists", hint="choose another name"
            ) from None

    def get_team(self, name: str) -> TeamRecord:
        with self.db.session() as session:
            return self._team_record(session, self._team_row(session, name))

    def list_teams(self) -> list[TeamRecord]:
        with self.db.session() as session:
            return [
                self._team_record(session, r) for r in session.scalars(select(TeamRow).order_by(TeamRow.name))
            ]

    def delete_team(self, name: str) -> Removed:
        """Delete the team with its memberships and role bindings, in one transaction."""
        with self.db.session() as session:
            row = self._team_row(session, name)
            removed = Removed(
                name=row.name,
                bindings=_count(session, RoleBindingRow.team_id, row.id),
                memberships=_count(session, TeamMemberRow.team_id, row.id),
            )
            session.delete(row)  # its bindings and memberships cascade (ON DELETE CASCADE)
            return removed

    def set_mfa_required(self, name: str, required: bool) -> TeamRecord:
        with self.db.session() as session:
            row = self._team_row(session, name)
            row.mfa_required = required
            session.flush()
            return self._team_record(session, row)

    def add_member(self, team: str, user: str, *, source: str = LOCAL_SOURCE, now: datetime) -> TeamRecord:
        with self.db.session() as session:
            team_row = self._team_row(session, team)
            user_row = self._user_row(session, user)
            if session.get(TeamMemberRow, (team_row.id, user_row.id)) is None:
                session.add(
                    TeamMemberRow(team_id=team_row.id, user_id=user_row.id, source=source, created_at=now)
                )
                session.flush()
            return self._team_record(session, team_row)

    def remove_member(self, team: str, user: str) -> TeamRecord:
        with self.db.session() as session:
            team_row = self._team_row(session, team)
            user_row = self._user_row(session, user)
            member = session.get(TeamMemberRow, (team_row.id, user_row.id))
            if member is None:
                raise errors.NotFound(f"user {user!r} is not a member of team {team!r}")
            session.delete(member)
            session.flush()
            return self._team_record(session, team_row)

    def sync_memberships(
        self, user: str, teams: Iterable[str], *, source: str, now: datetime
    ) -> tuple[str, ...]:
        """Make the user's memberships from ``source`` exactly ``teams`` (existing teams only).

        Memberships from other sources (an admin's ``team add``) are left alone.
        Returns the teams ``source`` put the user in.
        """
        wanted = set(teams)
        with self.db.session() as session:
            user_row = self._user_row(session, user)
            existing = {r.name: r for r in session.scalars(select(TeamRow).where(TeamRow.name.in_(wanted)))}
            current = {
                m.team_id: m
                for m in session.scalars(select(TeamMemberRow).where(TeamMemberRow.user_id == user_row.id))
            }
            wanted_ids = {r.id for r in existing.values()}
            for team_id, member in current.items():
                if member.source == source and team_id not in wanted_ids:
                    session.delete(member)
            for team_row in existing.values():
                if team_row.id not in current:
                    session.add(
                        TeamMemberRow(team_id=team_row.id, user_id=user_row.id, source=source, created_at=now)
                    )
            return tuple(sorted(existing))

    # --- role bindings ---

    def _bindings_query(self) -> Select[str, str | None, str, str, str, str, datetime, str, str]:
        """The columns ``_binding`` takes (not ORM objects: this is on every request's path);
        the user and team names are None without a match (outer joins)."""
        return (
            select(
                RoleBindingRow.id,
                RoleBindingRow.user_id,
                RoleBindingRow.role,
                RoleBindingRow.cluster,
                RoleBindingRow.namespace,
                RoleBindingRow.created_by,
                RoleBindingRow.created_at,
                UserRow.name,
                TeamRow.name,
            )
            .outerjoin(UserRow, UserRow.id == RoleBindingRow.user_id)
            .outerjoin(TeamRow, TeamRow.id == RoleBindingRow.team_id)
            .order_by(
                RoleBindingRow.cluster, RoleBindingRow.namespace, RoleBindingRow.role, RoleBindingRow.id
            )
        )

    @staticmethod
    def _binding(
        binding_id: str,
        user_id: str | None,
        role: str,
        cluster: str,
        namespace: str,
        created_by: str,
        created_at: datetime,
        user: str | None,
        team: str | None,
    ) -> BindingRecord:
        return BindingRecord(
            id=binding_id,
            subject_kind="user" if user_id else "team",
            subject=(user if user_id else team) or "",
            role=role,
            cluster=cluster,
            namespace=namespace,
            created_by=created_by,
            created_at=created_at,
        )

    def _subject_ids(self, session: Session, kind: str, subject: str) -> tuple[str | None, str | None]:
        if kind == "user":
            return self._user_row(session, subject).id, None
        if kind == "team":
            return None, self._team_row(session, subject).id
        raise errors.InvalidInput(f"a binding's subject is a user or a team, not {kind!r}")

    def add_binding(
        self,
        kind: str,
        subject: str,
        role: str,
        *,
        cluster: str = "",
        namespace: str = "",
        created_by: str,
        now: datetime,
    ) -> BindingRecord:
        try:
            with self.db.session() as session:
                user_id, team_id = self._subject_ids(session, kind, subject)
                row = RoleBindingRow(
                    key=_binding_key(user_id, team_id, role, cluster, namespace),
                    user_id=user_id,
                    team_id=team_id,
                    role=role,
                    cluster=cluster,
                    namespace=namespace,
                    created_by=created_by,
                    created_at=now,
                )
                session.add(row)
                session.flush()
                return self._binding(
                    row.id,
                    row.user_id,
                    row.role,
                    row.cluster,
                    row.namespace,
                    row.created_by,
                    row.created_at,
                    subject if user_id else None,
                    subject if team_id else None,
                )
        except IntegrityError:
            raise errors.AlreadyExists(
                f"{kind} {subject!r} already has {role} there", hint="`pilothouse role list` shows bindings"
            ) from None

    def find_binding(
        self, kind: str, subject: str, role: str, *, cluster: str = "", namespace: str = ""
    ) -> BindingRecord:
        with self.db.session() as session:
            user_id, team_id = self._subject_ids(session, kind, subject)
            key = _binding_key(user_id, team_id, role, cluster, namespace)
            found = session.execute(self._bindings_query().where(RoleBindingRow.key == key)).one_or_none()
            if found is None:
                where = f"cluster {cluster!r}" if cluster else "the platform"
                if namespace:
                    where = f"namespace {namespace!r} of {where}"
                raise errors.NotFound(
                    f"{kind} {subject!r} has no {role} binding on {where}",
                    hint="`pilothouse role list` shows bindings",
                )
            return self._binding(*found)

    def get_binding(self, binding_id: str) -> BindingRecord:
        with self.db.session() as session:
            found = session.execute(
                self._bindings_query().where(RoleBindingRow.id == binding_id)
            ).one_or_none()
            if found is None:
                raise errors.NotFound(
                    f"no role binding {binding_id!r}", hint="`pilothouse role list` shows bindings"
                )
            return self._binding(*found)

    def remove_binding(self, binding_id: str) -> None:
        with self.db.session() as session:
            if session.execute(delete(RoleBindingRow).where(RoleBindingRow.id == binding_id)).rowcount == 0:  # type: ignore[attr-defined]
                raise errors.NotFound(
                    f"no role binding {binding_id!r}", hint="`pilothouse role list` shows bindings"
                )

    def list_bindings(
        self, *, user: str | None = None, team: str | None = None, cluster: str | None = None
    ) -> list[BindingRecord]:
        query = self._bindings_query()
        if user is not None:
            query = query.where(UserRow.name == user)
        if team is not None:
            query = query.where(TeamRow.name == team)
        if cluster is not None:
            query = query.where(RoleBindingRow.cluster == cluster)
        with self.db.session() as session:
            return [self._binding(*found) for found in session.execute(query)]

    def access_of(self, name: str) -> UserAccess:
        """The user, their teams and every binding reaching them, read in one transaction."""
        with self.db.session() as session:
            return self._access(session, self._user_row(session, name))

    def _access(self, session: Session, row: UserRow) -> UserAccess:
        teams = self._teams_of(session, [row.id])[row.id]
        team_ids = select(TeamMemberRow.team_id).where(TeamMemberRow.user_id == row.id)
        query = self._bindings_query().where(
            or_(RoleBindingRow.user_id == row.id, RoleBindingRow.team_id.in_(team_ids))
        )
        bindings = tuple(self._binding(*found) for found in session.execute(query))
        return UserAccess(self._record(row, teams), bindings)

    # --- sessions ---

    @staticmethod
    def _session(row: SessionRow, user: str) -> SessionRecord:
        return SessionRecord(
            id=row.id,
            user=user,
            prefix=row.prefix,
            method=row.method,
            client=row.client,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
        )

    def open_session(
        self, user: str, *, method: str, client: str, expires_at: datetime, now: datetime
    ) -> tuple[str, SessionRecord]:
        """A new session of ``user``; its bearer token is returned once and only its digest stored."""
        token = new_bearer(SESSION_PREFIX)
        with self.db.session() as session:
            user_row = self._user_row(session, user)
            row = SessionRow(
                user_id=user_row.id,
                digest=digest(token),
                prefix=token[:8],
                method=method,
                client=client[:64],
                created_at=now,
                expires_at=expires_at,
            )
            session.add(row)
            session.flush()
            return token, self._session(row, user)

    def session_access(self, token: str, *, now: datetime) -> tuple[SessionRecord, UserAccess]:
        """The session of a bearer token and its user's access; ``Unauthenticated`` unless it is live."""
        wanted = digest(token)
        with self.db.session() as session:
            found = session.execute(
                select(SessionRow, UserRow)
                .join(UserRow, UserRow.id == SessionRow.user_id)
                .where(SessionRow.digest == wanted)
            ).one_or_none()
            if found is None or not hmac.compare_digest(found[0].digest, wanted):
                raise errors.Unauthenticated(
                    "the session token is not valid", hint="sign in again (`pilothouse login`)"
                )
            row, user_row = found
            if row.revoked_at is not None:
                raise errors.Unauthenticated(
                    f"the session {row.prefix}… was signed out", hint="sign in again (`pilothouse login`)"
                )
            if row.expires_at <= now:
                raise errors.Unauthenticated(
                    f"the session {row.prefix}… has expired", hint="sign in again (`pilothouse login`)"
                )
            if user_row.disabled_at is not None:
                raise errors.Unauthenticated(
                    f"user {user_row.name!r} is disabled", hint="ask a platform admin to enable the account"
                )
            return self._session(row, user_row.name), self._access(session, user_row)

    def list_sessions(
        self, user: str, *, now: datetime, include_inactive: bool = False
    ) -> list[SessionRecord]:
        with self.db.session() as session:
            user_row = self._user_row(session, user)
            query = (
                select(SessionRow)
                .where(SessionRow.user_id == user_row.id)
                .order_by(SessionRow.created_at.desc())
            )
            if not include_inactive:
                query = query.where(SessionRow.revoked_at.is_(None), SessionRow.expires_at > now)
            return [self._session(r, user) for r in session.scalars(query)]

    def revoke_session(self, session_id: str, *, now: datetime, user: str | None = None) -> SessionRecord:
        """Sign a session out (``user``: only if it is that user's)."""
        with self.db.session() as session:
            found = session.execute(
                select(SessionRow, UserRow.name)
                .join(UserRow, UserRow.id == SessionRow.user_id)
                .where(SessionRow.id == session_id)
            ).one_or_none()
            if found is None or (user is not None and found[1] != user):
                raise errors.NotFound(
                    f"no session {session_id!r}", hint="list sessions with `pilothouse user sessions`"
                )
            row, owner = found
            if row.revoked_at is None:
                row.revoked_at = now
            return self._session(row, owner)

    def revoke_sessions(self, user: str, *, now: datetime, keep: str | None = None) -> int:
        """Sign the user out everywhere (but session ``keep``); how many sessions ended."""
        with self.db.session() as session:
            return _revoke_sessions(session, self._user_row(session, user).id, now=now, keep=keep)

    def prune_sessions(self, *, ended_before: datetime) -> int:
        """Delete sessions that expired or were signed out before ``ended_before``; how many."""
        with self.db.session() as session:
            deleted: int = session.execute(
                delete(SessionRow).where(
                    or_(SessionRow.expires_at < ended_before, SessionRow.revoked_at < ended_before)
                )
            ).rowcount  # type: ignore[attr-defined]  # CursorResult
            return deleted

    # --- login throttling ---

    def prune_attempts(self, *, last_failure_before: datetime, now: datetime) -> int:
        """Delete throttle records whose last failure is before ``last_failure_before`` and that
        hold no lock at ``now`` (``identity.throttle.is_forgettable``); how many."""
        with self.db.session() as session:
            deleted: int = session.execute(
                delete(LoginThrottleRow).where(
                    or_(
                        LoginThrottleRow.last_failure_at.is_(None),
                        LoginThrottleRow.last_failure_at < last_failure_before,
                    ),
                    or_(LoginThrottleRow.locked_until.is_(None), LoginThrottleRow.locked_until <= now),
                )
            ).rowcount  # type: ignore[attr-defined]  # CursorResult
            return deleted

    def update_attempts(
        self, key: str, change: Callable[[AttemptsRow | None], AttemptsRow | None]
    ) -> AttemptsRow | None:
        """Read, change and write one throttle record in one transaction (row-locked on PostgreSQL).

        ``change`` gets the current record (None: none) and returns the new one (None: delete it).
        """
        for _attempt in range(3):
            try:
                with self.db.session() as session:
                    row = session.scalars(
                        select(LoginThrottleRow).where(LoginThrottleRow.key == key).with_for_update()
                    ).one_or_none()
                    before = (
                        AttemptsRow(row.failures, row.last_failure_at, row.locked_until)
                        if row is not None
                        else None
                    )
                    after = change(before)
                    if after is None:
                        if row is not None:
                            session.delete(row)
                    elif row is None:
                        session.add(
                            LoginThrottleRow(
                                key=key,
                                failures=after.failures,
                                last_failure_at=after.last_failure_at,
                                locked_until=after.locked_until,
                            )
                        )
                    else:
                        row.failures, row.last_failure_at, row.locked_until = (
                            after.failures,
                            after.last_failure_at,
                            after.locked_until,
                        )
                    return after
            except IntegrityError:
                continue  # another request created the row first: read it and apply the change again
        raise errors.Conflict("the login throttle record is contended", hint="try again in a moment")

    def attempts(self, key: str) -> AttemptsRow | None:
        with self.db.session() as session:
            row = session.get(LoginThrottleRow, key)
            return (
                AttemptsRow(row.failures, row.last_failure_at, row.locked_until) if row is not None else None
            )


def _revoke_sessions(session: Session, user_id: str, *, now: datetime, keep: str | None = None) -> int:
    query = update(SessionRow).where(SessionRow.user_id == user_id, SessionRow.revoked_at.is_(None))
    if keep is not None:
        query = query.where(SessionRow.id != keep)
    return int(session.execute(query.values(revoked_at=now)).rowcount)  # type: ignore[attr-defined]  # CursorResult
