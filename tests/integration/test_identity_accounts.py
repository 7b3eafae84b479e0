"""Accounts against the real store (SQLite and PostgreSQL): sign-in, MFA, sessions, tokens, bindings.

A fake clock drives expiry, throttling and TOTP steps; everything else is real:
Argon2id hashes (with cheap parameters here; the production ones are in the
unit tests), Fernet-sealed TOTP secrets, conditional updates racing in threads.
The last test reads the raw database and the log output for every secret made.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from argon2 import PasswordHasher
from cryptography.fernet import Fernet
from sqlalchemy import inspect, text

from pilothouse import errors, logs
from pilothouse.identity import passwords
from pilothouse.identity.accounts import Accounts, Enrolment, LoginAttempt, Pruned
from pilothouse.identity.policy import ClusterGrant, Permission, Role, Scope, SubjectKind
from pilothouse.identity.throttle import ThrottlePolicy
from pilothouse.store.db import Database
from pilothouse.store.identity import IdentityStore
from pilothouse.store.secrets import SecretBox
from pilothouse.store.tokens import TokenStore

T0 = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
PROD = Scope.of_cluster("prod")
PLATFORM = Scope.platform()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class World:
    accounts: Accounts
    clock: Clock
    db: Database
    admin: Any


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id with small parameters: the same code path, a hundredth of the time."""
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def world(store_url: str) -> Iterator[World]:
    db = Database(store_url)
    db.migrate()
    clock = Clock(T0)
    policy = ThrottlePolicy(free_failures=2, lockout_failures=5, lockout=timedelta(minutes=15))
    accounts = Accounts(
        IdentityStore(db, SecretBox(Fernet.generate_key())),
        TokenStore(db),
        clock=clock,
        throttle=policy,
        session_ttl=timedelta(hours=1),
        token_ttl=timedelta(days=30),
    )
    yield World(accounts, clock, db, Accounts.local_operator("root"))
    db.dispose()


def secret_of(enrolment: Enrolment) -> str:
    return parse_qs(urlsplit(enrolment.uri).query)["secret"][0]


def totp(secret: str, moment: datetime) -> str:
    return pyotp.TOTP(secret).at(moment)


def log_in(w: World, user: str = "alice", password: str = PASSWORD, **extra: Any) -> str:
    return w.accounts.log_in(LoginAttempt(user, password, **extra)).token


# ----- sign-in and sessions -------------------------------------------------------------------


def test_a_session_carries_the_users_and_teams_bindings(world: World) -> None:
    a = world.accounts
    a.create_user("Alice", PASSWORD, email="alice@example.com")
    a.create_team("sre")
    a.add_member("sre", "alice")
    a.bind(world.admin, SubjectKind.USER, "alice", Role.VIEWER, Scope.of_namespace("prod", "web"))
    a.bind(world.admin, SubjectKind.TEAM, "sre", Role.OPERATOR, Scope.of_cluster("staging"))

    issued = a.log_in(LoginAttempt("ALICE ", PASSWORD, client="10.0.0.7"))
    principal = a.authenticate(issued.token)

    assert issued.token.startswith("phs_")
    assert (issued.session.method, issued.session.client, issued.user.name) == (
        "password",
        "10.0.0.7",
        "alice",
    )
    assert issued.session.expires_at == T0 + timedelta(hours=1)
    assert (principal.name, principal.user, principal.teams) == ("user:alice", "alice", frozenset({"sre"}))
    assert a.allowed(principal, Permission.CLUSTERS_READ, Scope.of_namespace("prod", "web"))
    assert not a.allowed(principal, Permission.CLUSTERS_READ, PROD)
    assert a.allowed(principal, Permission.CLUSTERS_WRITE, Scope.of_cluster("staging"))
    with pytest.raises(errors.Forbidden, match=r"clusters:write on cluster/prod"):
        a.check(principal, Permission.CLUSTERS_WRITE, PROD)
    assert a.cluster_access("alice", "prod") == (ClusterGrant(Role.VIEWER, "web"),)
    assert [s.id for s in a.sessions_of("alice")] == [issued.session.id]


def test_wrong_password_and_unknown_user_get_the_same_answer(world: World) -> None:
    world.accounts.create_user("alice", PASSWORD)
    answers = []
    for user, password in (("alice", "wrong password!"), ("mallory", PASSWORD), ("", "")):
        with pytest.raises(errors.Unauthenticated) as caught:
            log_in(world, user, password)
        answers.append(caught.value.to_dict())
    assert answers[0] == answers[1] == answers[2]
    assert answers[0]["message"] == "wrong user name or password"


def test_sessions_expire_sign_out_and_end_when_the_user_is_disabled(world: World) -> None:
    a = world.accounts
    a.create_user("alice", PASSWORD)
    first, second = log_in(world), log_in(world)
    a.end_session(first)
    with pytest.raises(errors.Unauthenticated, match="signed out"):
        a.authenticate(first)
    a.authenticate(second)
    world.clock.advance(hours=1)
    with pytest.raises(errors.Unauthenticated, match="expired"):
        a.authenticate(second)
    third = log_in(world)
    token, _ = a.issue_token(world.admin, "alice-ci", [(Role.VIEWER, PLATFORM)], owner="alice")
    a.set_disabled("alice", True)
    for bearer in (third, token):
        with pytest.raises(errors.Unauthenticated):
            a.authenticate(bearer)
    with pytest.raises(errors.Unauthenticated, match="disabled"):
        log_in(world)
    a.set_disabled("alice", False)
    with pytest.raises(errors.Unauthenticated):
        a.authenticate(third)  # disabling signed it out for good
    a.authenticate(token)
    assert a.sessions_of("alice", include_inactive=True)[0].revoked_at is not None


def test_a_password_reset_signs_the_user_out_everywhere(world: World) -> None:
    a = world.accounts
    a.create_user("alice", PASSWORD)
    old = log_in(world)
    assert a.set_password("alice", "a brand new passphrase") == 1
    with pytest.raises(errors.Unauthenticated):
        a.authenticate(old)
    with pytest.raises(errors.Unauthenticated):
        log_in(world)
    mine = log_in(world, password="a brand new passphrase")
    other = log_in(world, password="a brand new passphrase")
    me = a.authenticate(mine)
    keep = a.session_of(mine).id
    with pytest.raises(errors.Unauthenticated, match="current password"):
        a.change_own_password(me, "not it at all", "yet another passphrase", keep_session=keep)
    assert (
        a.change_own_password(me, "a brand new passphrase", "yet another passphrase", keep_session=keep) == 1
    )
    a.authenticate(mine)
    with pytest.raises(errors.Unauthenticated):
        a.authenticate(other)


def test_deleting_a_user_takes_everything_theirs_and_a_new_namesake_inherits_nothing(
    world: World,
) -> None:
    a = world.accounts
    a.create_user("alice", PASSWORD)
    a.create_user("bob", PASSWORD)
    a.create_team("sre")
    a.add_member("sre", "alice")
    a.add_member("sre", "bob")
    a.bind(world.admin, SubjectKind.USER, "alice", Role.OPERATOR, PROD)
    a.bind(world.admin, SubjectKind.USER, "bob", Role.VIEWER, PROD)
    a.bind(world.admin, SubjectKind.TEAM, "sre", Role.VIEWER, Scope.of_cluster("staging"))
    secret = secret_of(a.enroll_mfa("alice"))
    session = log_in(world, code=totp(secret, world.clock.now))  # confirms MFA: recovery codes stored
    token, _ = a.issue_token(world.admin, "alice-ci", [(Role.VIEWER, PLATFORM)], owner="alice")
    with pytest.raises(errors.Unauthenticated):
        log_in(world, password="a wrong guess")  # a failed-login record under user:alice
    alice = a.authenticate(session)

    with pytest.raises(errors.Conflict, match="signed in as"):
        a.delete_user(alice, "alice")
    removed = a.delete_user(world.admin, "Alice")

    assert (removed.name, removed.bindings, removed.memberships, removed.sessions, removed.tokens) == (
        "alice",
        1,
        1,
        1,
        1,
    )
    for bearer in (session, token):
        with pytest.raises(errors.Unauthenticated):
            a.authenticate(bearer)
    with pytest.raises(errors.NotFound):
        a.get_user("alice")
    assert a.get_team("sre").members == ("bob",)
    assert {(b.subject, b.role) for b in a.list_bindings()} == {("bob", "viewer"), ("sre", "viewer")}
    assert a.list_tokens(owner="alice") == []
    with world.db.session() as raw:
        assert raw.execute(text("SELECT count(*) FROM recovery_codes")).scalar() == 0
        assert raw.execute(text("SELECT count(*) FROM login_throttle WHERE key = 'user:alice'")).scalar() == 0
    with pytest.raises(errors.NotFound):
        a.delete_user(world.admin, "alice")

    a.create_user("alice", "another passphrase")  # a new person under the old name
    newcomer = a.authenticate(log_in(world, password="another passphrase"))
    assert newcomer.teams == frozenset()
    assert not a.allowed(newcomer, Permission.CLUSTERS_READ, PROD)
    assert a.get_user("alice").mfa == "off"


def test_deleting_a_team_ends_what_it_granted_and_keeps_its_members(world: World) -> None:
    a = world.accounts
    a.create_user("alice", PASSWORD)
    a.create_team("sre")
    a.add_member("sre", "alice")
    a.bind(world.admin, SubjectKind.TEAM, "sre", Role.OPERATOR, PROD)
    a.bind(world.admin, SubjectKind.USER, "alice", Role.VIEWER, Scope.of_cluster("staging"))
    session = log_in(world)
    assert a.allowed(a.authenticate(session), Permission.CLUSTERS_WRITE, PROD)

    removed = a.delete_team(world.admin, " SRE ")

    assert (removed.name, removed.bindings, removed.memberships) == ("sre", 1, 1)
    alice = a.authenticate(session)  # the session lives on, without the team's role
    assert alice.teams == frozenset()
    assert not a.allowed(alice, Permission.CLUSTERS_READ, PROD)
    assert a.allowed(alice, Permission.CLUSTERS_READ, Scope.of_cluster("staging"))
    assert [t.name for t in a.list_teams()] == []
    with pytest.raises(errors.NotFound, match="no team named 'sre'"):
        a.delete_team(world.admin, "sre")


# ----- throttling -----------------------------------------------------------------------------


def test_guessing_is_slowed_then_locked_out_even_for_the_right_password(world: World) -> None:
    world.accounts.create_user("alice", PASSWORD)
    for _ in range(2):  # free failures
        with pytest.raises(errors.Unauthenticated):
            log_in(world, password="guess guess guess")
    with pytest.raises(errors.Unauthenticated):
        log_in(world, password="guess guess guess")  # third failure: now a 1 s delay
    with pytest.raises(errors.TooManyAttempts, match=r"try again in 1 s") as caught:
        log_in(world)
    assert caught.value.http_status == 429
    for _ in range(2):
        world.clock.advance(seconds=61)
        with pytest.raises(errors.Unauthenticated):
            log_in(world, password="guess guess guess")
    world.clock.advance(seconds=61)
    with pytest.raises(errors.TooManyAttempts, match="locked"):
        log_in(world)  # five failures: locked, the right password does not help
    world.clock.advance(minutes=13)
    with pytest.raises(errors.TooManyAttempts):
        log_in(world)
    world.clock.advance(minutes=1)
    log_in(world)  # the lock ran out; success clears the record
    with pytest.raises(errors.Unauthenticated):
        log_in(world, password="one more typo")
    log_in(world)


def test_the_prune_forgets_stale_throttle_records_and_old_sessions_only(world: World) -> None:
    a = world.accounts
    a.create_user("alice", PASSWORD)
    signed_out = log_in(world)
    a.end_session(signed_out)
    expired = log_in(world)

    def keys() -> set[str]:
        with world.db.session() as raw:
            return {k for (k,) in raw.execute(text("SELECT key FROM login_throttle"))}

    for name in ("ghost-1", "ghost-2"):  # names that never existed leave records too
        with pytest.raises(errors.Unauthenticated):
            log_in(world, name, "a guess", client="10.9.9.9")
    world.clock.advance(minutes=5)
    for i in range(5):  # the fifth failure locks alice for 15 minutes
        with pytest.raises(errors.Unauthenticated):
            log_in(world, password="a wrong guess", client=f"10.0.0.{i}")
        world.clock.advance(seconds=61)
    assert {"user:ghost-1", "user:ghost-2", "client:10.9.9.9", "user:alice"} <= keys()
    assert a.prune() == Pruned(attempts=0, sessions=0)  # everything still decides something

    world.clock.advance(minutes=6)  # the ghosts' failures are past the window; alice is locked
    assert a.prune() == Pruned(attempts=3, sessions=0)
    assert "user:alice" in keys()
    with pytest.raises(errors.TooManyAttempts):
        log_in(world)

    world.clock.advance(minutes=16)  # the lock and alice's failures are over
    assert a.prune().attempts == 6
    assert keys() == set()

    world.clock.advance(days=30, hours=1)
    current = log_in(world)
    assert a.prune() == Pruned(attempts=0, sessions=2)
    assert [s.id for s in a.sessions_of("alice", include_inactive=True)] == [a.session_of(current).id]
    for gone in (signed_out, expired):
        with pytest.raises(errors.Unauthenticated):
            a.authenticate(gone)


def test_one_client_guessing_many_users_is_throttled_by_its_address(world: World) -> None:
    world.accounts.create_user("alice", PASSWORD)
    for user in ("u1", "u2", "u3"):
        with pytest.raises(errors.Unauthenticated):
            log_in(world, user, "guess guess guess", client="203.0.113.9")
    with pytest.raises(errors.TooManyAttempts):
        log_in(world, "alice", PASSWORD, client="203.0.113.9")
    log_in(world, "alice", PASSWORD, client="198.51.100.1")  # another address is not affected


# ----- MFA ------------------------------------------------------------------------------------


def test_totp_enrolment_sign_in_replay_and_recovery_codes(world: World) -> None:
    a = world.accounts
    a.create_user("alice", PASSWORD)
    secret = secret_of(a.enroll_mfa("alice"))
    assert a.get_user("alice").mfa == "pending"
    with pytest.raises(errors.MfaRequired) as needed:
        log_in(world)
    assert needed.value.code == "mfa_required"

    confirming = a.log_in(LoginAttempt("alice", PASSWORD, code=totp(secret, world.clock.now)))
    assert confirming.session.method == "password+totp"
    codes = confirming.recovery_codes
    assert len(codes) == 10
    assert a.get_user("alice").mfa == "on"

    with pytest.raises(errors.Unauthenticated, match="already used"):
        log_in(world, code=totp(secret, world.clock.now))  # the same code again, still inside its window
    world.clock.advance(seconds=31)
    with pytest.raises(errors.Unauthenticated, match="already used"):
        log_in(world, code=totp(secret, world.clock.now - timedelta(seconds=30)))  # the previous step
    log_in(world, code=totp(secret, world.clock.now))
    with pytest.raises(errors.Unauthenticated, match="wrong or out of date"):
        log_in(world, code=totp(secret, world.clock.now + timedelta(minutes=5)))

    world.clock.advance(seconds=10)
    assert a.log_in(LoginAttempt("alice", PASSWORD, recovery_code=codes[3].upper())).session.method == (
        "password+recovery"
    )
    with pytest.raises(errors.Unauthenticated, match="already used"):
        log_in(world, recovery_code=codes[3])
    with pytest.raises(errors.Unauthenticated, match="wrong or was already used"):
        log_in(world, recovery_code="aaaa-bbbb-cccc-dddd")
    assert a.store.recovery_codes_left("alice") == 9


def test_a_team_requiring_mfa_keeps_unenrolled_members_out(world: World) -> None:
    a = world.accounts
    a.create_user("bob", PASSWORD)
    a.create_team("sre", mfa_required=True)
    log_in(world, "bob")
    a.add_member("sre", "bob")
    with pytest.raises(errors.Forbidden, match="team sre requires multi-factor"):
        log_in(world, "bob")
    secret = secret_of(a.enroll_mfa("bob"))
    with pytest.raises(errors.MfaRequired):
        log_in(world, "bob")
    bob = a.authenticate(log_in(world, "bob", code=totp(secret, world.clock.now)))
    with pytest.raises(errors.Conflict, match="requires"):
        a.disable_own_mfa(bob, totp(secret, world.clock.now + timedelta(seconds=30)))
    a.require_mfa("sre", False)
    world.clock.advance(seconds=30)
    with pytest.raises(errors.Unauthenticated, match="already used"):
        a.disable_own_mfa(bob, totp(secret, world.clock.now - timedelta(seconds=30)))
    a.disable_own_mfa(bob, totp(secret, world.clock.now))
    log_in(world, "bob")


def test_concurrent_use_of_one_totp_step_succeeds_once(world: World) -> None:
    a = world.accounts
    a.create_user("carol", PASSWORD)
    secret = secret_of(a.enroll_mfa("carol"))
    a.confirm_mfa("carol", totp(secret, world.clock.now))
    subject = a.store.login_subject("carol")
    assert subject is not None
    step = (subject.totp_last_step or 0) + 1
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def race() -> None:
        barrier.wait()
        results.append(a.store.use_totp_step(subject.id, step))

    threads = [threading.Thread(target=race) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True]


# ----- bindings and tokens --------------------------------------------------------------------


def test_a_cluster_admin_delegates_only_inside_their_cluster(world: World) -> None:
    a = world.accounts
    for user in ("ann", "bob"):
        a.create_user(user, PASSWORD)
    a.bind(world.admin, SubjectKind.USER, "ann", Role.CLUSTER_ADMIN, PROD)
    ann = a.authenticate(log_in(world, "ann"))

    binding = a.bind(ann, SubjectKind.USER, "bob", Role.VIEWER, Scope.of_namespace("prod", "web"))
    assert binding.created_by == "user:ann"
    for role, scope in (
        (Role.VIEWER, Scope.of_cluster("staging")),
        (Role.VIEWER, PLATFORM),
        (Role.PLATFORM_ADMIN, PROD),
        (Role.AUDITOR, PROD),
    ):
        with pytest.raises(errors.Forbidden):
            a.bind(ann, SubjectKind.USER, "bob", role, scope)
    with pytest.raises(errors.AlreadyExists):
        a.bind(ann, SubjectKind.USER, "bob", Role.VIEWER, Scope.of_namespace("prod", "web"))
    with pytest.raises(errors.NotFound, match="no user named 'ghost'"):
        a.bind(world.admin, SubjectKind.USER, "ghost", Role.VIEWER, PROD)
    [ann_binding] = a.list_bindings(user="ann")
    assert {b.id for b in a.list_bindings(within=PROD)} == {binding.id, ann_binding.id}
    assert a.list_bindings(within=Scope.of_cluster("staging")) == []

    bob = a.authenticate(log_in(world, "bob"))
    assert a.allowed(bob, Permission.CLUSTERS_READ, Scope.of_namespace("prod", "web"))
    a.unbind(ann, binding.id)
    assert not a.allowed(
        a.authenticate(log_in(world, "bob")), Permission.CLUSTERS_READ, Scope.of_namespace("prod", "web")
    )
    platform_binding = a.bind(world.admin, SubjectKind.USER, "bob", Role.VIEWER, PLATFORM)
    with pytest.raises(errors.Forbidden):
        a.unbind(ann, platform_binding.id)


def test_tokens_hold_scoped_roles_and_never_more_than_their_owner(world: World) -> None:
    a = world.accounts
    a.create_user("alice", PASSWORD)
    a.bind(world.admin, SubjectKind.USER, "alice", Role.OPERATOR, PROD)

    service, info = a.issue_token(
        world.admin, "deployer", [(Role.OPERATOR, Scope.of_namespace("prod", "web"))]
    )
    assert info.expires_at == T0 + timedelta(days=30)
    deployer = a.authenticate(service)
    assert deployer.name == "token:deployer"
    assert a.allowed(deployer, Permission.CLUSTERS_WRITE, Scope.of_namespace("prod", "web"))
    assert not a.allowed(deployer, Permission.CLUSTERS_WRITE, PROD)

    owned, info = a.issue_token(
        world.admin, "alice-ro", [(Role.PLATFORM_ADMIN, PLATFORM)], owner="alice", never_expires=True
    )
    assert (info.owner, info.expires_at) == ("alice", None)
    alice = a.authenticate(owned)
    assert (alice.user, alice.via) == ("alice", "token alice-ro")
    assert a.allowed(alice, Permission.CLUSTERS_WRITE, PROD)  # the user's operator, allowed by the token
    assert not a.allowed(
        alice, Permission.USERS_ADMIN, PLATFORM
    )  # the token's platform-admin is not the user's
    assert not a.allowed(alice, Permission.CLUSTERS_READ, Scope.of_cluster("staging"))

    with pytest.raises(errors.Forbidden, match="cannot issue"):
        a.issue_token(a.authenticate(log_in(world)), "escalate", [(Role.CLUSTER_ADMIN, PROD)])
    with pytest.raises(errors.InvalidInput):
        a.issue_token(world.admin, "no roles", [])
    short, _ = a.issue_token(world.admin, "short", [(Role.VIEWER, PLATFORM)], ttl=timedelta(minutes=5))
    world.clock.advance(minutes=5)
    with pytest.raises(errors.Unauthenticated, match="expired"):
        a.authenticate(short)
    a.revoke_token("deployer")
    with pytest.raises(errors.Unauthenticated, match="revoked"):
        a.authenticate(service)
    assert {t.name for t in a.list_tokens(owner="alice")} == {"alice-ro"}


def test_tokens_issued_with_bare_roles_hold_them_platform_wide(world: World) -> None:
    token, info = world.accounts.tokens.issue("legacy", ("viewer", "nonsense"))
    principal = world.accounts.authenticate(token)
    assert info.roles == ("viewer", "nonsense")
    assert principal.roles == ("viewer",)
    assert world.accounts.allowed(principal, Permission.CLUSTERS_READ, Scope.of_namespace("any", "where"))


# ----- single sign-on seam --------------------------------------------------------------------


def test_external_sign_in_creates_the_user_and_syncs_only_its_own_memberships(world: World) -> None:
    a = world.accounts
    for team in ("dev", "ops", "sre"):
        a.create_team(team)
    source = "oidc:https://idp.example"
    first = a.sign_in_external(
        "dana@example.com", source=source, subject="u-1", teams=["dev", "ops", "unknown", "Bad Team!"]
    )
    assert first.session.method == "oidc"
    assert (first.user.teams, first.user.has_password) == (("dev", "ops"), False)
    a.add_member("sre", "dana@example.com")  # an admin's membership
    again = a.sign_in_external(
        "dana.renamed", source=source, subject="u-1", teams=["ops"], display_name="Dana"
    )
    assert again.user.name == "dana@example.com"  # found by the provider's subject, not the name
    assert again.user.teams == ("ops", "sre")
    assert a.get_user("dana@example.com").display_name == "Dana"
    with pytest.raises(errors.Unauthenticated):
        log_in(world, "dana@example.com", "anything at all")  # no password to guess
    a.require_mfa("ops", True)
    with pytest.raises(errors.MfaRequired):
        a.sign_in_external("dana@example.com", source=source, subject="u-1", teams=["ops"])
    vouched = a.sign_in_external(
        "dana@example.com", source=source, subject="u-1", teams=["ops"], mfa_satisfied=True
    )
    assert vouched.session.method == "oidc+mfa"
    a.set_disabled("dana@example.com", True)
    with pytest.raises(errors.Unauthenticated, match="disabled"):
        a.sign_in_external("dana@example.com", source=source, subject="u-1", mfa_satisfied=True)


def test_external_sign_in_never_takes_over_an_existing_name(world: World) -> None:
    a = world.accounts
    a.create_user("admin", PASSWORD)
    a.bind(world.admin, SubjectKind.USER, "admin", Role.PLATFORM_ADMIN, PLATFORM)
    for source, subject in (("oidc:https://evil.example", "x"), ("oidc:https://idp.example", "someone-else")):
        with pytest.raises(errors.Conflict, match="not linked to this provider"):
            a.sign_in_external("admin", source=source, subject=subject)
    assert a.get_user("admin").source == "local"


# ----- no secret at rest or in the logs -------------------------------------------------------


def _everything_stored(db: Database) -> bytes:
    """Every value of every row of every table, as bytes (what a stolen database shows)."""
    dump = bytearray()
    with db.engine.connect() as conn:
        for table in inspect(db.engine).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):  # noqa: S608 - table names from the schema
                for value in row:
                    dump += value if isinstance(value, bytes | memoryview) else str(value).encode()
                    dump += b"\x00"
    return bytes(dump)


def test_no_secret_appears_in_the_database_or_the_logs(
    world: World, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("DEBUG")
    try:
        a = world.accounts
        a.create_user("alice", PASSWORD)
        enrolment = a.enroll_mfa("alice")
        secret = secret_of(enrolment)
        first_code = totp(secret, world.clock.now)
        session = a.log_in(LoginAttempt("alice", PASSWORD, code=first_code))
        with pytest.raises(errors.Unauthenticated):
            log_in(world, password="a wrong password typed")
        world.clock.advance(seconds=30)
        second = a.log_in(LoginAttempt("alice", PASSWORD, recovery_code=session.recovery_codes[0]))
        api_token, _ = a.issue_token(world.admin, "ci", [(Role.VIEWER, PROD)], owner="alice")
        a.authenticate(api_token)
        a.authenticate(second.token)
        a.set_password("alice", "the second passphrase")
    finally:
        logs.configure("WARNING")
    secrets = {
        "password": PASSWORD,
        "wrong password": "a wrong password typed",
        "new password": "the second passphrase",
        "totp secret": secret,
        "otpauth uri": enrolment.uri,
        "first totp code": first_code,
        "session token": session.token,
        "second session token": second.token,
        "api token": api_token,
        **{f"recovery code {i}": c for i, c in enumerate(session.recovery_codes)},
    }
    captured = capsys.readouterr()
    log_output = captured.out + captured.err
    assert "identity.signed_in" in log_output
    assert "identity.login_failed" in log_output
    stored = _everything_stored(world.db)
    raw_file = b""
    if store_url.startswith("sqlite"):
        world.db.dispose()  # checkpoint the WAL into the file
        path = Path(store_url.removeprefix("sqlite:///"))
        raw_file = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert b"role_bindings" in raw_file or b"users" in raw_file
    for what, value in secrets.items():
        forms = {value, value.replace("-", ""), value.split("_", 1)[-1]}
        for form in forms:
            if what == "first totp code":
                assert not re.search(rf"\b{form}\b", log_output), what
                continue
            assert form.encode() not in stored, f"{what} stored in plain text"
            assert form.encode() not in raw_file, f"{what} in the raw database file"
            assert form not in log_output, f"{what} in the log output"
