"""Accounts: users, teams, role bindings, sessions, API tokens, sign-in — and the access check.

The service every entry point uses (``Platform.identity``). It ties the
pure parts together — ``policy`` (who may do what where), ``throttle``
(when another login may run), ``mfa`` (TOTP and recovery codes, pyotp) and
``passwords`` (Argon2id, argon2-cffi) — with the store (``store.identity``,
``store.tokens``).

- ``authenticate(bearer)`` turns a session token (``phs_…``) or an API token
  (``ph_…``) into a ``policy.Principal``; ``check(principal, permission,
  target)`` is the one authorisation check (``Forbidden`` with the reason).
- ``log_in`` is the password (+ TOTP or recovery code) sign-in, throttled per
  user and per client address; ``sign_in_external`` is the seam for single
  sign-on: a provider that verified the user creates or updates them, syncs
  their team memberships from its claims and opens a session.
- ``bind``/``unbind`` and ``issue_token`` refuse to hand out more than the
  caller holds (``policy.can_grant``).
- ``cluster_access(user, cluster)`` gives the (role, namespace-or-None) grants
  a user holds on one cluster, for short-lived cluster credentials.

Events are logged with names and ids, never a password, code or token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from pilothouse import errors
from pilothouse.identity import mfa, passwords
from pilothouse.identity.policy import (
    ROLE_PERMISSIONS,
    Binding,
    ClusterGrant,
    Decision,
    Grant,
    Permission,
    Principal,
    Role,
    Scope,
    SubjectKind,
    authorize,
    authorize_anywhere,
    can_grant,
    compute_cluster_access,
    principal_for,
)
from pilothouse.identity.throttle import (
    Attempts,
    ThrottlePolicy,
    check_attempt,
    forgettable_cutoff,
    record_failure,
)
from pilothouse.store.identity import (
    SESSION_PREFIX,
    AttemptsRow,
    BindingRecord,
    IdentityStore,
    Removed,
    SessionRecord,
    TeamRecord,
    UserAccess,
    UserRecord,
)
from pilothouse.store.tokens import TokenGrant, TokenInfo, TokenStore

log = structlog.get_logger(__name__)

_USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
_TEAM_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,95}$")
_BAD_LOGIN = "wrong user name or password"


def normalise_user_name(name: str) -> str:
    return name.strip().lower()


def check_user_name(name: str) -> str:
    normal = normalise_user_name(name)
    if not _USER_NAME.match(normal):
        raise errors.InvalidInput(
            f"{name[:80]!r} is not a valid user name",
            hint="1-64 characters: letters, digits, '.', '_', '@', '-', starting with a letter or digit",
        )
    return normal


def check_team_name(name: str) -> str:
    normal = name.strip().lower()
    if not _TEAM_NAME.match(normal):
        raise errors.InvalidInput(
            f"{name[:80]!r} is not a valid team name",
            hint="1-64 characters: letters, digits, '.', '_', '-', starting with a letter or digit",
        )
    return normal


def check_scope(cluster: str | None, namespace: str | None) -> Scope:
    try:
        return Scope.checked(cluster or None, namespace or None)
    except ValueError as exc:
        raise errors.InvalidInput(str(exc), hint="e.g. --cluster prod --namespace web") from None


def check_role(name: str) -> Role:
    try:
        return Role(name)
    except ValueError:
        raise errors.InvalidInput(
            f"unknown role {name[:40]!r}", hint=f"roles: {', '.join(r.value for r in Role)}"
        ) from None


# ----- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginAttempt:
    username: str
    password: str
    code: str | None = None  # TOTP code
    recovery_code: str | None = None
    client: str = ""  # the client's address ("cli" for the local CLI)


@dataclass(frozen=True)
class IssuedSession:
    token: str  # shown once
    session: SessionRecord
    user: UserRecord
    #: Recovery codes, when this sign-in confirmed a pending MFA enrolment (shown once).
    recovery_codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pruned:
    attempts: int
    sessions: int


@dataclass(frozen=True)
class Enrolment:
    user: str
    secret: str
    uri: str
    qr_svg: str
    qr_text: str


def _binding(record: BindingRecord) -> Binding | None:
    """The policy binding of a stored one; None for one naming an unknown role (it grants nothing)."""
    try:
        return Binding(
            SubjectKind(record.subject_kind),
            record.subject,
            Role(record.role),
            Scope.of(record.cluster or None, record.namespace or None),
        )
    except ValueError:
        return None


def binding_scope(record: BindingRecord) -> Scope:
    return Scope.of(record.cluster or None, record.namespace or None)


def _token_grants(info: TokenInfo) -> tuple[Grant, ...]:
    grants = []
    for g in info.grants:
        try:
            grants.append(
                Grant(
                    Role(g.role), Scope.of(g.cluster or None, g.namespace or None), via=f"token {info.name}"
                )
            )
        except ValueError:
            continue  # an unknown role or a malformed scope grants nothing
    return tuple(grants)


class Accounts:
    def __init__(
        self,
        store: IdentityStore,
        tokens: TokenStore,
        *,
        clock: Callable[[], datetime],
        throttle: ThrottlePolicy | None = None,
        session_ttl: timedelta = timedelta(hours=12),
        token_ttl: timedelta | None = timedelta(days=90),
        mfa_issuer: str = "Pilothouse",
        session_history: timedelta = timedelta(days=30),
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.clock = clock
        self.throttle = throttle or ThrottlePolicy()
        self.session_ttl = session_ttl
        self.token_ttl = token_ttl
        self.mfa_issuer = mfa_issuer
        self.session_history = session_history

    # ----- the access check -------------------------------------------------------------------

    def check(self, principal: Principal, permission: Permission, target: Scope | None = None) -> Decision:
        """The one authorisation check: allowed, or ``Forbidden`` saying what is missing."""
        decision = authorize(principal, permission, target or Scope.platform())
        if not decision:
            log.info(
                "identity.denied", principal=principal.name, permission=permission.value, target=str(target)
            )
            raise errors.Forbidden(decision.reason, hint="ask a platform admin for a role that grants it")
        return decision

    def check_anywhere(self, principal: Principal, permission: Permission) -> Decision:
        """``check`` for routes that filter what they return by scope: the permission somewhere."""
        decision = authorize_anywhere(principal, permission)
        if not decision:
            log.info("identity.denied", principal=principal.name, permission=permission.value, target="any")
            raise errors.Forbidden(decision.reason, hint="ask a platform admin for a role that grants it")
        return decision

    def allowed(self, principal: Principal, permission: Permission, target: Scope) -> bool:
        """``check`` without raising, for filtering lists."""
        return bool(authorize(principal, permission, target))

    # ----- who is calling ---------------------------------------------------------------------

    def authenticate(self, bearer: str) -> Principal:
        """The principal of a session token or an API token; ``Unauthenticated`` unless it is live."""
        now = self.clock()
        if bearer.startswith(SESSION_PREFIX):
            session, access = self.store.session_access(bearer, now=now)
            return self._user_principal(access, via=f"session {session.id[:8]}")
        info = self.tokens.authenticate(bearer, now=now)
        grants = _token_grants(info)
        if info.owner is None:
            return Principal(name=f"token:{info.name}", grants=grants, via=f"token {info.name}")
        access = self.store.access_of(info.owner)
        if access.user.disabled:
            raise errors.Unauthenticated(
                f"the token {info.prefix}… belongs to a disabled user", hint="ask a platform admin"
            )
        user = self._user_principal(access, via=f"token {info.name}")
        return Principal(
            name=user.name,
            grants=user.grants,
            user=user.user,
            teams=user.teams,
            restriction=grants,
            via=user.via,
        )

    def _user_principal(self, access: UserAccess, *, via: str) -> Principal:
        bindings = [b for b in (_binding(r) for r in access.bindings) if b is not None]
        return principal_for(bindings, user=access.user.name, teams=access.user.teams, via=via)

    def principal_of_user(self, name: str) -> Principal:
        """What user ``name`` holds now (no token restriction): for SSO and cluster credentials."""
        access = self.store.access_of(normalise_user_name(name))
        if access.user.disabled:
            return Principal(name=f"user:{access.user.name}", grants=(), user=access.user.name)
        return self._user_principal(access, via="direct")

    @staticmethod
    def local_operator(os_user: str) -> Principal:
        """The operator who owns the data directory and its key file, at a local CLI: platform admin."""
        return Principal(
            name=f"local:{os_user}",
            grants=(Grant(Role.PLATFORM_ADMIN, Scope.platform(), via="owner of the data directory"),),
            via="local operator",
        )

    def cluster_access(self, user: str, cluster: str) -> tuple[ClusterGrant, ...]:
        """The roles ``user`` holds on ``cluster``: (role, None) cluster-wide, (role, ns) in one namespace."""
        return compute_cluster_access(self.principal_of_user(user), cluster)

    # ----- signing in -------------------------------------------------------------------------

    def _throttle_keys(self, user: str, client: str) -> list[str]:
        keys = [f"user:{user[:120]}"]
        if client:
            keys.append(f"client:{client[:120]}")
        return keys

    def _refuse_if_throttled(self, keys: Sequence[str], now: datetime) -> None:
        for key in keys:
            row = self.store.attempts(key)
            attempts = Attempts(row.failures, row.last_failure_at, row.locked_until) if row else Attempts()
            verdict = check_attempt(attempts, now, self.throttle)
            if not verdict.allowed:
                seconds = max(1, int(verdict.retry_after.total_seconds() + 0.999))
                log.info("identity.login_throttled", key=key.split(":", 1)[0], retry_after=seconds)
                raise errors.TooManyAttempts(
                    f"too many failed sign-ins ({verdict.reason}); try again in {seconds} s",
                    hint="wait, or ask a platform admin if the account was locked",
                    retry_after=seconds,
                )

    def _fail(self, keys: Sequence[str], now: datetime, *, user: str, client: str, reason: str) -> None:
        def change(row: AttemptsRow | None) -> AttemptsRow:
            current = Attempts(row.failures, row.last_failure_at, row.locked_until) if row else Attempts()
            after = record_failure(current, now, self.throttle)
            return AttemptsRow(after.failures, after.last_failure_at, after.locked_until)

        for key in keys:
            self.store.update_attempts(key, change)
        log.info("identity.login_failed", user=user, client=client, reason=reason)

    def log_in(self, attempt: LoginAttempt) -> IssuedSession:
        """Sign in with a password and, when needed, a TOTP or recovery code; open a session."""
        now = self.clock()
        name = normalise_user_name(attempt.username)[:64]
        keys = self._throttle_keys(name, attempt.client)
        self._refuse_if_throttled(keys, now)
        subject = self.store.login_subject(name)
        if subject is None or not passwords.verify(subject.password_hash, attempt.password):
            self._fail(keys, now, user=name, client=attempt.client, reason="password")
            raise errors.Unauthenticated(_BAD_LOGIN, hint="check the user name and password")
        if subject.disabled:
            raise errors.Unauthenticated(
                f"user {name!r} is disabled", hint="ask a platform admin to enable the account"
            )
        method, recovery_codes = "password", tuple[str, ...]()
        needs_factor = subject.totp_enabled or subject.mfa_required_by or subject.totp_secret is not None
        if needs_factor:
            if subject.totp_secret is None:
                teams = ", ".join(subject.mfa_required_by)
                raise errors.Forbidden(
                    f"team {teams} requires multi-factor sign-in and user {name!r} has not enrolled",
                    hint=f"ask a platform admin to run `pilothouse user mfa enroll {name}` and scan the code",
                )
            if attempt.recovery_code and subject.totp_enabled:
                if not self.store.use_recovery_code(
                    subject.id, mfa.recovery_digest(attempt.recovery_code), now=now
                ):
                    self._fail(keys, now, user=name, client=attempt.client, reason="recovery code")
                    raise errors.Unauthenticated(
                        "the recovery code is wrong or was already used", hint="each recovery code works once"
                    )
                method = "password+recovery"
            elif attempt.code:
                match = mfa.match_step(
                    subject.totp_secret, attempt.code, now=now, last_used_step=subject.totp_last_step
                )
                won = False
                if match.step is not None and subject.totp_enabled:
                    won = self.store.use_totp_step(subject.id, match.step)
                elif match.step is not None:  # the first code of a pending enrolment confirms it
                    confirmed = self._confirm(subject.id, match.step, now)
                    won, recovery_codes = confirmed is not None, confirmed or ()
                if not won:
                    self._fail(keys, now, user=name, client=attempt.client, reason="totp")
                    raise errors.Unauthenticated(
                        match.reason or "the TOTP code was already used; wait for the next one",
                        hint="enter the current code from your authenticator app",
                    )
                method = "password+totp"
            else:
                raise errors.MfaRequired(
                    "this account needs a second factor: a TOTP code or a recovery code",
                    hint="send the current code from your authenticator app (`pilothouse login --code`)",
                )
        self.store.update_attempts(keys[0], lambda _row: None)
        if subject.password_hash and passwords.needs_rehash(subject.password_hash):
            self.store.set_password_hash(name, passwords.hash_password(attempt.password), now=now)
        issued = self._open_session(name, method=method, client=attempt.client, now=now)
        return IssuedSession(issued.token, issued.session, issued.user, recovery_codes)

    def _confirm(self, user_id: str, step: int, now: datetime) -> tuple[str, ...] | None:
        """Activate a pending enrolment with the code of ``step``: its fresh recovery codes, or None if it lost a race."""
        codes = tuple(mfa.new_recovery_codes())
        if not self.store.enable_totp(
            user_id, step=step, recovery_digests=map(mfa.recovery_digest, codes), now=now
        ):
            return None
        return codes

    def _open_session(self, user: str, *, method: str, client: str, now: datetime) -> IssuedSession:
        token, session = self.store.open_session(
            user, method=method, client=client, expires_at=now + self.session_ttl, now=now
        )
        log.info("identity.signed_in", user=user, method=method, client=client, session=session.id)
        return IssuedSession(token, session, self.store.get_user(user))

    def sign_in_external(
        self,
        name: str,
        *,
        source: str,
        subject: str,
        teams: Iterable[str] = (),
        email: str = "",
        display_name: str = "",
        client: str = "",
        mfa_satisfied: bool = False,
    ) -> IssuedSession:
        """Single sign-on: the provider ``source`` (``oidc:<issuer>``) has verified ``subject``.

        The user is found by ``<source>|<subject>`` (the provider's stable key), so a
        renamed account keeps its user and a name already held by someone else is
        refused (``Conflict``), never taken over. On first sign-in the user is created
        as ``name`` (no password). Email and display name follow the claims; the
        memberships from ``source`` become exactly the existing ``teams`` among the
        claims (an admin's memberships stay). A disabled user is refused, and so is a
        member of an MFA-requiring team unless the provider vouches for a second
        factor (``mfa_satisfied``, e.g. from the ``amr`` claim). Opens a session.
        """
        now = self.clock()
        if not source or not subject:
            raise errors.InvalidInput("an external sign-in needs its provider and subject")
        external_id = f"{source}|{subject}"[:512]
        existing = self.store.find_external_user(external_id)
        if existing is None:
            user = check_user_name(name)
            if self.store.find_user(user) is not None:
                log.warning("identity.sso_name_taken", user=user, source=source)
                raise errors.Conflict(
                    f"a user named {user!r} already exists and is not linked to this provider",
                    hint="ask a platform admin: the name belongs to another account",
                )
            existing = self.store.add_user(
                user,
                password_hash=None,
                email=email[:254],
                display_name=display_name[:160],
                source=source,
                external_id=external_id,
                now=now,
            )
        else:
            self.store.update_profile(
                existing.name, email=email[:254] or None, display_name=display_name[:160] or None
            )
        user = existing.name
        if existing.disabled:
            raise errors.Unauthenticated(
                f"user {user!r} is disabled", hint="ask a platform admin to enable the account"
            )
        wanted = []
        for team in teams:
            try:
                wanted.append(check_team_name(team))
            except errors.InvalidInput:
                continue  # a claim value that cannot be a team name maps to no team
        self.store.sync_memberships(user, wanted, source=source, now=now)
        login = self.store.login_subject(user)
        if login is not None and login.mfa_required_by and not mfa_satisfied:
            raise errors.MfaRequired(
                f"team {', '.join(login.mfa_required_by)} requires multi-factor sign-in",
                hint="sign in at the provider with a second factor",
            )
        return self._open_session(
            user, method="oidc+mfa" if mfa_satisfied else "oidc", client=client, now=now
        )

    def end_session(self, bearer: str) -> SessionRecord:
        """Sign out the session of ``bearer`` (``Unauthenticated`` if it is not a live session)."""
        if not bearer.startswith(SESSION_PREFIX):
            raise errors.InvalidInput("only a session can sign out", hint="revoke an API token instead")
        session = self.session_of(bearer)
        log.info("identity.signed_out", user=session.user, session=session.id)
        return self.store.revoke_session(session.id, now=self.clock())

    def session_of(self, bearer: str) -> SessionRecord:
        session, _access = self.store.session_access(bearer, now=self.clock())
        return session

    def prune(self) -> Pruned:
        """Forget what decides nothing any more: throttle records past their window (also those
        of names that never existed) and sessions that ended more than ``session_history`` ago."""
        now = self.clock()
        pruned = Pruned(
            attempts=self.store.prune_attempts(
                last_failure_before=forgettable_cutoff(now, self.throttle), now=now
            ),
            sessions=self.store.prune_sessions(ended_before=now - self.session_history),
        )
        if pruned.attempts or pruned.sessions:
            log.info("identity.pruned", attempts=pruned.attempts, sessions=pruned.sessions)
        return pruned

    # ----- users ------------------------------------------------------------------------------

    def create_user(
        self, name: str, password: str | None, *, display_name: str = "", email: str = ""
    ) -> UserRecord:
        user = check_user_name(name)
        hashed = passwords.hash_password(password) if password is not None else None
        record = self.store.add_user(
            user, password_hash=hashed, display_name=display_name[:160], email=email[:254], now=self.clock()
        )
        log.info("identity.user_created", user=user)
        return record

    def list_users(self) -> list[UserRecord]:
        return self.store.list_users()

    def get_user(self, name: str) -> UserRecord:
        return self.store.get_user(normalise_user_name(name))

    def set_disabled(self, name: str, disabled: bool) -> UserRecord:
        record = self.store.set_disabled(normalise_user_name(name), disabled, now=self.clock())
        log.info("identity.user_disabled" if disabled else "identity.user_enabled", user=record.name)
        return record

    def delete_user(self, actor: Principal, name: str) -> Removed:
        """Delete a user with their sessions, tokens, memberships and bindings (never oneself).

        Client certificates already issued for their clusters stay valid until their
        NotAfter (at most an hour); no new one is issued. An SSO user who signs in again is
        created afresh, without the old bindings.
        """
        user = normalise_user_name(name)
        if actor.user == user:
            raise errors.Conflict(
                f"you cannot delete the user you are signed in as ({user!r})",
                hint="ask another admin, or disable the account (`pilothouse user disable`)",
            )
        removed = self.store.delete_user(user)
        log.info(
            "identity.user_deleted",
            user=user,
            by=actor.name,
            bindings=removed.bindings,
            sessions=removed.sessions,
            tokens=removed.tokens,
            memberships=removed.memberships,
        )
        return removed

    def set_password(self, name: str, password: str) -> int:
        """Set a user's password (an admin reset); every session of the user ends. Returns how many."""
        user = normalise_user_name(name)
        now = self.clock()
        self.store.set_password_hash(user, passwords.hash_password(password), now=now)
        ended = self.store.revoke_sessions(user, now=now)
        self.store.update_attempts(f"user:{user}", lambda _row: None)
        log.info("identity.password_set", user=user, sessions_ended=ended)
        return ended

    def verify_own_password(self, principal: Principal, password: str) -> str:
        """Check a signed-in user's password again (throttled like a sign-in); returns the user name."""
        user = self.user_of(principal)
        now = self.clock()
        keys = self._throttle_keys(user, "")
        self._refuse_if_throttled(keys, now)
        subject = self.store.login_subject(user)
        if subject is None or not passwords.verify(subject.password_hash, password):
            self._fail(keys, now, user=user, client="", reason="password re-check")
            raise errors.Unauthenticated("the current password is wrong", hint="check it and try again")
        return user

    def change_own_password(
        self, principal: Principal, current: str, new: str, *, keep_session: str | None
    ) -> int:
        """A user changes their own password (the current one is checked); other sessions end."""
        user = self.verify_own_password(principal, current)
        now = self.clock()
        self.store.set_password_hash(user, passwords.hash_password(new), now=now)
        ended = self.store.revoke_sessions(user, now=now, keep=keep_session)
        log.info("identity.password_changed", user=user, sessions_ended=ended)
        return ended

    @staticmethod
    def user_of(principal: Principal) -> str:
        """The user a principal is; ``InvalidInput`` for a service token or the local operator."""
        if principal.user is None:
            raise errors.InvalidInput(
                f"{principal.name} is not a user", hint="sign in as the user (`pilothouse login`)"
            )
        return principal.user

    def sessions_of(self, name: str, *, include_inactive: bool = False) -> list[SessionRecord]:
        return self.store.list_sessions(
            normalise_user_name(name), now=self.clock(), include_inactive=include_inactive
        )

    def revoke_sessions(self, name: str) -> int:
        return self.store.revoke_sessions(normalise_user_name(name), now=self.clock())

    # ----- MFA --------------------------------------------------------------------------------

    def enroll_mfa(self, name: str) -> Enrolment:
        """Start a TOTP enrolment: a new pending secret, shown once (URI and QR code).

        It becomes active with the first valid code: ``confirm_mfa`` or a sign-in with that code.
        """
        user = normalise_user_name(name)
        secret = mfa.new_totp_secret()
        self.store.set_pending_totp(user, secret)
        uri = mfa.provisioning_uri(secret, account=user, issuer=self.mfa_issuer)
        log.info("identity.mfa_enrolment_started", user=user)
        return Enrolment(user, secret, uri, mfa.qr_svg(uri), mfa.qr_text(uri))

    def confirm_mfa(self, name: str, code: str) -> tuple[str, ...]:
        """Activate a pending enrolment with a valid code; returns fresh recovery codes (shown once)."""
        user = normalise_user_name(name)
        now = self.clock()
        subject = self.store.login_subject(user)
        if subject is None or subject.totp_secret is None or subject.totp_enabled:
            raise errors.Conflict(
                f"user {user!r} has no pending MFA enrolment",
                hint="start one with `pilothouse user mfa enroll`",
            )
        match = mfa.match_step(subject.totp_secret, code, now=now, last_used_step=subject.totp_last_step)
        codes = self._confirm(subject.id, match.step, now) if match.step is not None else None
        if codes is None:
            raise errors.InvalidInput(
                match.reason or "the enrolment changed meanwhile", hint="enter the current code"
            )
        log.info("identity.mfa_enabled", user=user)
        return codes

    def disable_mfa(self, name: str) -> None:
        """Remove a user's second factor (an admin, e.g. for a lost device)."""
        user = normalise_user_name(name)
        self.store.get_user(user)
        self.store.clear_totp(user)
        log.info("identity.mfa_disabled", user=user)

    def disable_own_mfa(self, principal: Principal, code: str) -> None:
        """A user removes their own second factor, proving it with a current code; refused if a team requires it."""
        user = self.user_of(principal)
        subject = self.store.login_subject(user)
        if subject is None or subject.totp_secret is None:
            raise errors.Conflict(f"user {user!r} has no second factor", hint="nothing to disable")
        if subject.mfa_required_by:
            raise errors.Conflict(
                f"team {', '.join(subject.mfa_required_by)} requires multi-factor sign-in",
                hint="ask a platform admin if the device is lost",
            )
        match = mfa.match_step(
            subject.totp_secret, code, now=self.clock(), last_used_step=subject.totp_last_step
        )
        if match.step is None or not self.store.use_totp_step(subject.id, match.step):
            raise errors.Unauthenticated(
                match.reason or "the TOTP code was already used", hint="enter the current code"
            )
        self.store.clear_totp(user)
        log.info("identity.mfa_disabled", user=user)

    # ----- teams ------------------------------------------------------------------------------

    def create_team(self, name: str, *, mfa_required: bool = False) -> TeamRecord:
        record = self.store.add_team(check_team_name(name), mfa_required=mfa_required, now=self.clock())
        log.info("identity.team_created", team=record.name)
        return record

    def list_teams(self) -> list[TeamRecord]:
        return self.store.list_teams()

    def delete_team(self, actor: Principal, name: str) -> Removed:
        """Delete a team: its role bindings stop reaching its members at once."""
        removed = self.store.delete_team(name.strip().lower())
        log.info(
            "identity.team_deleted",
            team=removed.name,
            by=actor.name,
            bindings=removed.bindings,
            memberships=removed.memberships,
        )
        return removed

    def get_team(self, name: str) -> TeamRecord:
        return self.store.get_team(name.strip().lower())

    def add_member(self, team: str, user: str) -> TeamRecord:
        record = self.store.add_member(team.strip().lower(), normalise_user_name(user), now=self.clock())
        log.info("identity.team_member_added", team=record.name, user=normalise_user_name(user))
        return record

    def remove_member(self, team: str, user: str) -> TeamRecord:
        record = self.store.remove_member(team.strip().lower(), normalise_user_name(user))
        log.info("identity.team_member_removed", team=record.name, user=normalise_user_name(user))
        return record

    def require_mfa(self, team: str, required: bool) -> TeamRecord:
        record = self.store.set_mfa_required(team.strip().lower(), required)
        log.info("identity.team_mfa", team=record.name, required=required)
        return record

    # ----- role bindings ----------------------------------------------------------------------

    def _require_grant(self, actor: Principal, role: Role, scope: Scope) -> None:
        decision = can_grant(actor, role, scope)
        if not decision:
            log.info("identity.denied", principal=actor.name, permission="roles:bind", target=str(scope))
            raise errors.Forbidden(decision.reason, hint="ask a platform admin to bind it")

    def bind(
        self, actor: Principal, kind: SubjectKind, subject: str, role: Role, scope: Scope
    ) -> BindingRecord:
        """Give ``role`` at ``scope`` to a user or team; ``actor`` must hold what it hands out."""
        self._require_grant(actor, role, scope)
        name = normalise_user_name(subject) if kind is SubjectKind.USER else subject.strip().lower()
        record = self.store.add_binding(
            kind.value,
            name,
            role.value,
            cluster=scope.cluster,
            namespace=scope.namespace,
            created_by=actor.name,
            now=self.clock(),
        )
        log.info(
            "identity.bound", subject=f"{kind.value}:{name}", role=role.value, scope=str(scope), by=actor.name
        )
        return record

    def find_binding(self, kind: SubjectKind, subject: str, role: Role, scope: Scope) -> BindingRecord:
        name = normalise_user_name(subject) if kind is SubjectKind.USER else subject.strip().lower()
        return self.store.find_binding(
            kind.value, name, role.value, cluster=scope.cluster, namespace=scope.namespace
        )

    def unbind(self, actor: Principal, binding_id: str) -> BindingRecord:
        """Remove a binding; ``actor`` must be able to grant it (nobody removes what they could not give)."""
        record = self.store.get_binding(binding_id)
        scope = binding_scope(record)
        try:
            role = Role(record.role)
        except ValueError:
            role = Role.VIEWER  # an unknown role grants nothing: removing it needs only roles:bind there
        self._require_grant(actor, role, scope)
        self.store.remove_binding(binding_id)
        log.info(
            "identity.unbound",
            subject=f"{record.subject_kind}:{record.subject}",
            role=record.role,
            scope=str(scope),
            by=actor.name,
        )
        return record

    def list_bindings(
        self, *, user: str | None = None, team: str | None = None, within: Scope | None = None
    ) -> list[BindingRecord]:
        """Bindings (of one user or team), those at or inside ``within`` when given."""
        found = self.store.list_bindings(
            user=normalise_user_name(user) if user else None, team=team.strip().lower() if team else None
        )
        if within is None:
            return found
        return [b for b in found if within.covers(binding_scope(b))]

    # ----- API tokens -------------------------------------------------------------------------

    def issue_token(
        self,
        actor: Principal,
        name: str,
        grants: Sequence[tuple[Role, Scope]],
        *,
        ttl: timedelta | None = None,
        never_expires: bool = False,
        owner: str | None = None,
    ) -> tuple[str, TokenInfo]:
        """Issue an API token with roles at scopes; the token is returned once.

        ``ttl``: None → the default lifetime (``never_expires``: none at all). The actor must
        hold every permission of every role at its scope; a token for a user (``owner``)
        can never do more than that user either.
        """
        if not _TOKEN_NAME.match(name):
            raise errors.InvalidInput(
                f"{name[:80]!r} is not a valid token name", hint="1-96 letters, digits, '.', '_', ':', '-'"
            )
        if not grants:
            raise errors.InvalidInput("a token needs at least one role", hint="e.g. --role viewer")
        for role, scope in grants:
            missing = [p.value for p in sorted(ROLE_PERMISSIONS[role]) if not authorize(actor, p, scope)]
            if missing:
                raise errors.Forbidden(
                    f"{actor.name} cannot issue {role.value} on {scope}: it lacks {', '.join(missing)} there",
                    hint="issue a token with less",
                )
        lifetime = None if never_expires else (ttl or self.token_ttl)
        expires = self.clock() + lifetime if lifetime else None
        token, info = self.tokens.issue(
            name,
            grants=tuple(TokenGrant(role.value, scope.cluster, scope.namespace) for role, scope in grants),
            expires_at=expires,
            owner=normalise_user_name(owner) if owner else None,
        )
        log.info("identity.token_issued", token=name, owner=info.owner, by=actor.name)
        return token, info

    def list_tokens(self, *, owner: str | None = None) -> list[TokenInfo]:
        return self.tokens.list(owner=normalise_user_name(owner) if owner else None)

    def revoke_token(self, name: str) -> None:
        self.tokens.revoke(name, now=self.clock())
        log.info("identity.token_revoked", token=name)
