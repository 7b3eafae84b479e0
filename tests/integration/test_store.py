"""Integration tests for pilothouse.store against real SQLite and a real PostgreSQL.

Every test that takes ``db`` runs once per backend on a fresh, empty database
(``store_url`` in ``tests/integration/postgres.py``). Raw SQL reads check what
is really on disk: ciphertexts, token digests, orphan rows.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet
from sqlalchemy import text

from pilothouse import errors
from pilothouse.store import clusters, db, models, secrets, tokens

KUBECONFIG = b"apiVersion: v1\nkind: Config\nusers: [{name: admin, user: {token: kc-plaintext-7f3a}}]\n"
ADMIN_KEY = b"-----BEGIN EC PRIVATE KEY-----\nkey-plaintext-91bd\n-----END EC PRIVATE KEY-----\n"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
PLUS5 = timezone(timedelta(hours=5))
TABLES = {"clusters", "secrets", "api_tokens"}


@pytest.fixture
def database(store_url: str) -> Iterator[db.Database]:
    database = db.Database(store_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def box() -> secrets.SecretBox:
    return secrets.SecretBox(Fernet.generate_key())


@pytest.fixture
def store(database: db.Database, box: secrets.SecretBox) -> clusters.ClusterStore:
    return clusters.ClusterStore(database, box)


@pytest.fixture
def token_store(database: db.Database) -> tokens.TokenStore:
    return tokens.TokenStore(database)


def raw(database: db.Database, query: str, **params: Any) -> list[dict[str, Any]]:
    with database.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(text(query), params)]


def raw_update(database: db.Database, query: str, **params: Any) -> int:
    with database.engine.begin() as conn:
        return conn.execute(text(query), params).rowcount


def add_cluster(store: clusters.ClusterStore, name: str, **overrides: Any) -> clusters.ClusterRecord:
    fields: dict[str, Any] = {
        "name": name,
        "provider": "local",
        "desired_state": "Running",
        "phase": "Provisioning",
        "kubernetes_version": "1.36.3",
        "server_url": "https://127.0.0.1:6443",
        "spec": {"nodes": 3, "labels": {"team": "infra"}},
        "runtime": {"pids": [101, 102]},
        "message": "creating",
    }
    fields.update(overrides)
    return store.add(**fields)


def secret_rows(database: db.Database) -> list[dict[str, Any]]:
    return raw(database, "SELECT * FROM secrets ORDER BY owner, name")


def bytes_of(value: Any) -> bytes:
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else str(value).encode()


# ----- schema and migrations ------------------------------------------------------------


def test_migrate_creates_the_tables_and_is_idempotent(store_url: str) -> None:
    database = db.Database(store_url)
    try:
        assert TABLES.isdisjoint(database.table_names())

        database.migrate()
        first = set(database.table_names())
        database.migrate()

        assert first >= TABLES | {"alembic_version"}
        assert set(database.table_names()) == first
        assert raw(database, "SELECT version_num FROM alembic_version") == [
            {"version_num": ScriptDirectory(str(db.MIGRATIONS_DIR)).get_current_head()}
        ]
    finally:
        database.dispose()


def test_migrate_keeps_existing_rows(store: clusters.ClusterStore, database: db.Database) -> None:
    before = add_cluster(store, "alpha", secrets={"kubeconfig": KUBECONFIG})

    database.migrate()

    assert store.get("alpha") == before
    assert store.get_secret("alpha", "kubeconfig") == KUBECONFIG


def test_migrations_head_matches_the_models(database: db.Database) -> None:
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn)
        diff = compare_metadata(context, models.Base.metadata)
        current = context.get_current_revision()

    assert diff == []
    assert current == ScriptDirectory(str(db.MIGRATIONS_DIR)).get_current_head()


# ----- clusters --------------------------------------------------------------------------


def test_add_then_get_returns_the_same_record(store: clusters.ClusterStore) -> None:
    added = add_cluster(store, "alpha", secrets={"kubeconfig": KUBECONFIG, "admin-key": ADMIN_KEY})

    got = store.get("alpha")

    assert got == added
    assert (got.name, got.provider, got.desired_state, got.phase) == (
        "alpha",
        "local",
        "Running",
        "Provisioning",
    )
    assert got.spec == {"nodes": 3, "labels": {"team": "infra"}}
    assert got.runtime == {"pids": [101, 102]}
    assert got.secret_names == ("admin-key", "kubeconfig")
    assert got.created_at.tzinfo is not None
    assert got.created_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - got.created_at) < timedelta(minutes=5)


def test_get_and_find_of_an_unknown_cluster(store: clusters.ClusterStore) -> None:
    with pytest.raises(errors.NotFound, match="no cluster named 'ghost'"):
        store.get("ghost")
    assert store.find("ghost") is None


def test_list_is_sorted_by_name_and_matches_get(store: clusters.ClusterStore) -> None:
    assert store.clusters() == []
    for name in ("charlie", "alpha", "bravo"):
        add_cluster(store, name, secrets={"kubeconfig": KUBECONFIG} if name != "bravo" else None)

    listed = store.clusters()

    assert [r.name for r in listed] == ["alpha", "bravo", "charlie"]
    assert listed == [store.get(r.name) for r in listed]
    assert [r.secret_names for r in listed] == [("kubeconfig",), (), ("kubeconfig",)]


def test_update_changes_only_the_given_fields(store: clusters.ClusterStore) -> None:
    before = add_cluster(store, "alpha", secrets={"kubeconfig": KUBECONFIG})

    after = store.update("alpha", phase="Running", message="", spec={"nodes": 5})

    assert (after.phase, after.message, after.spec) == ("Running", "", {"nodes": 5})
    assert store.get("alpha") == after
    assert after.updated_at >= before.updated_at
    unchanged = ("id", "name", "provider", "desired_state", "kubernetes_version", "server_url", "runtime")
    assert {f: getattr(after, f) for f in unchanged} == {f: getattr(before, f) for f in unchanged}
    assert after.created_at == before.created_at
    assert after.secret_names == ("kubeconfig",)


def test_update_rejects_unknown_fields_and_unknown_clusters(store: clusters.ClusterStore) -> None:
    before = add_cluster(store, "alpha")

    with pytest.raises(ValueError, match="provider"):
        store.update("alpha", provider="imported")
    with pytest.raises(ValueError, match="id"):
        store.update("alpha", id="0" * 32)
    with pytest.raises(errors.NotFound):
        store.update("ghost", phase="Running")
    assert store.get("alpha") == before


def test_remove_deletes_the_cluster_and_only_its_secrets(
    store: clusters.ClusterStore, database: db.Database
) -> None:
    doomed = add_cluster(store, "doomed", secrets={"kubeconfig": KUBECONFIG, "admin-key": ADMIN_KEY})
    kept = add_cluster(store, "kept", secrets={"kubeconfig": KUBECONFIG})

    store.remove("doomed")

    assert store.find("doomed") is None
    assert [r.name for r in store.clusters()] == ["kept"]
    owners = {row["owner"] for row in secret_rows(database)}
    assert owners == {f"cluster:{kept.id}"}
    assert f"cluster:{doomed.id}" not in owners
    assert store.get_secret("kept", "kubeconfig") == KUBECONFIG
    with pytest.raises(errors.NotFound):
        store.remove("doomed")


def test_duplicate_name_raises_and_leaves_the_original_untouched(
    store: clusters.ClusterStore, database: db.Database
) -> None:
    add_cluster(store, "alpha", secrets={"kubeconfig": KUBECONFIG})
    record_before = store.get("alpha")
    cluster_rows_before = raw(database, "SELECT * FROM clusters")
    secrets_before = secret_rows(database)

    with pytest.raises(errors.AlreadyExists, match="'alpha' already exists") as caught:
        add_cluster(
            store,
            "alpha",
            provider="imported",
            phase="Ready",
            spec={"other": True},
            secrets={"kubeconfig": b"impostor", "token": b"impostor"},
        )

    assert caught.value.code == "already_exists"
    assert store.get("alpha") == record_before
    assert raw(database, "SELECT * FROM clusters") == cluster_rows_before
    assert secret_rows(database) == secrets_before
    assert store.get_secret("alpha", "kubeconfig") == KUBECONFIG


def test_a_failing_add_with_secrets_leaves_no_rows(
    store: clusters.ClusterStore, database: db.Database
) -> None:
    add_cluster(store, "alpha", secrets={"kubeconfig": KUBECONFIG})
    secrets_before = secret_rows(database)

    # the cluster row is flushed first, then sealing the second secret fails
    with pytest.raises(TypeError):
        add_cluster(
            store,
            "beta",
            secrets={"kubeconfig": KUBECONFIG, "token": "not bytes"},
        )

    assert store.find("beta") is None
    assert [r["name"] for r in raw(database, "SELECT name FROM clusters")] == ["alpha"]
    assert secret_rows(database) == secrets_before
    assert len(secrets_before) == 1


def test_secret_round_trip_and_overwrite(store: clusters.ClusterStore, database: db.Database) -> None:
    add_cluster(store, "alpha")

    store.put_secret("alpha", "kubeconfig", KUBECONFIG)
    assert store.get_secret("alpha", "kubeconfig") == KUBECONFIG
    store.put_secret("alpha", "kubeconfig", ADMIN_KEY)

    assert store.get_secret("alpha", "kubeconfig") == ADMIN_KEY
    assert len(secret_rows(database)) == 1
    assert store.get("alpha").secret_names == ("kubeconfig",)


def test_secret_of_an_unknown_cluster_or_name_is_not_found(store: clusters.ClusterStore) -> None:
    add_cluster(store, "alpha")

    with pytest.raises(errors.NotFound, match="no stored kubeconfig"):
        store.get_secret("alpha", "kubeconfig")
    with pytest.raises(errors.NotFound):
        store.get_secret("ghost", "kubeconfig")
    with pytest.raises(errors.NotFound):
        store.put_secret("ghost", "kubeconfig", KUBECONFIG)


def test_stored_ciphertext_does_not_contain_the_plaintext(
    store: clusters.ClusterStore, database: db.Database
) -> None:
    record = add_cluster(store, "alpha", secrets={"kubeconfig": KUBECONFIG})
    store.put_secret("alpha", "admin-key", ADMIN_KEY)

    rows = secret_rows(database)

    assert [(r["owner"], r["name"]) for r in rows] == [
        (f"cluster:{record.id}", "admin-key"),
        (f"cluster:{record.id}", "kubeconfig"),
    ]
    for row in rows:
        stored = b"".join(bytes_of(value) for value in row.values())
        assert stored  # the row was read
        for needle in (KUBECONFIG, ADMIN_KEY, b"kc-plaintext-7f3a", b"key-plaintext-91bd"):
            assert needle not in stored


def test_get_secret_with_another_key_raises(
    store: clusters.ClusterStore, database: db.Database, box: secrets.SecretBox
) -> None:
    add_cluster(store, "alpha", secrets={"kubeconfig": KUBECONFIG})
    other = clusters.ClusterStore(database, secrets.SecretBox(Fernet.generate_key()))

    with pytest.raises(errors.SecretKeyError, match="cannot be decrypted") as caught:
        other.get_secret("alpha", "kubeconfig")

    assert "kc-plaintext-7f3a" not in str(caught.value)
    assert clusters.ClusterStore(database, box).get_secret("alpha", "kubeconfig") == KUBECONFIG


def test_swapped_ciphertexts_fail_the_binding_check(
    store: clusters.ClusterStore, database: db.Database
) -> None:
    alpha = add_cluster(store, "alpha", secrets={"kubeconfig": b"alpha-kubeconfig", "token": b"alpha-token"})
    beta = add_cluster(store, "beta", secrets={"kubeconfig": b"beta-kubeconfig"})
    cipher = {(r["owner"], r["name"]): bytes_of(r["ciphertext"]) for r in secret_rows(database)}
    a_kube, a_token = (f"cluster:{alpha.id}", "kubeconfig"), (f"cluster:{alpha.id}", "token")
    b_kube = (f"cluster:{beta.id}", "kubeconfig")

    def write(key: tuple[str, str], value: bytes) -> None:
        query = "UPDATE secrets SET ciphertext = :c WHERE owner = :o AND name = :n"
        assert raw_update(database, query, c=value, o=key[0], n=key[1]) == 1

    write(a_kube, cipher[b_kube])  # another cluster's secret of the same name
    write(b_kube, cipher[a_kube])
    write(a_token, cipher[a_kube])  # another secret of the same cluster

    for name, secret in (("alpha", "kubeconfig"), ("beta", "kubeconfig"), ("alpha", "token")):
        with pytest.raises(errors.SecretKeyError, match="bound to another owner"):
            store.get_secret(name, secret)

    write(a_kube, cipher[a_kube])  # restoring the right ciphertext makes it readable again
    assert store.get_secret("alpha", "kubeconfig") == b"alpha-kubeconfig"


# ----- tokens ----------------------------------------------------------------------------


def test_issue_returns_a_ph_token_and_stores_only_its_digest(
    token_store: tokens.TokenStore, database: db.Database
) -> None:
    token, info = token_store.issue("ci", ("admin", "viewer"), expires_at=T0 + timedelta(days=1))

    assert token.startswith("ph_")
    assert len(token) > 40
    assert token not in repr(info)
    assert (info.name, info.roles, info.prefix) == ("ci", ("admin", "viewer"), token[:8])
    [row] = raw(database, "SELECT * FROM api_tokens")
    assert row["digest"] == hashlib.sha256(token.encode()).hexdigest()
    for column, value in row.items():
        assert token.encode() not in bytes_of(value), column
        assert token[3:].encode() not in bytes_of(value), column
    assert token_store.list() == [info]
    assert token_store.count() == 1


def test_each_issue_returns_a_new_token(token_store: tokens.TokenStore) -> None:
    first, _ = token_store.issue("one", ("viewer",))
    second, _ = token_store.issue("two", ("viewer",))

    assert first != second
    assert token_store.authenticate(first, now=T0).name == "one"
    assert token_store.authenticate(second, now=T0).name == "two"


def test_authenticate_returns_the_tokens_info(token_store: tokens.TokenStore) -> None:
    token, info = token_store.issue("ci", ("operator",))

    assert token_store.authenticate(token, now=T0) == info
    assert info.expires_at is None
    assert info.revoked_at is None


@pytest.mark.parametrize("candidate", ["ph_unknown", "", "not-a-token"])
def test_an_unknown_token_is_unauthenticated(token_store: tokens.TokenStore, candidate: str) -> None:
    token, _ = token_store.issue("ci", ("viewer",))

    with pytest.raises(errors.Unauthenticated, match="not valid"):
        token_store.authenticate(candidate, now=T0)
    with pytest.raises(errors.Unauthenticated, match="not valid"):
        token_store.authenticate(token + "x", now=T0)


def test_a_revoked_token_is_unauthenticated(token_store: tokens.TokenStore) -> None:
    token, _ = token_store.issue("ci", ("viewer",))
    token_store.revoke("ci", now=T0)

    with pytest.raises(errors.Unauthenticated, match="revoked") as caught:
        token_store.authenticate(token, now=T0 + timedelta(seconds=1))

    assert token not in str(caught.value)
    [info] = token_store.list()
    assert info.revoked_at == T0
    with pytest.raises(errors.NotFound):
        token_store.revoke("ghost", now=T0)


def test_an_expired_token_is_unauthenticated(token_store: tokens.TokenStore) -> None:
    token, _ = token_store.issue("ci", ("viewer",), expires_at=T0)

    assert token_store.authenticate(token, now=T0 - timedelta(seconds=1)).name == "ci"
    for moment in (T0, T0 + timedelta(days=1)):
        with pytest.raises(errors.Unauthenticated, match="expired"):
            token_store.authenticate(token, now=moment)


def test_duplicate_token_name_raises(token_store: tokens.TokenStore) -> None:
    _, first = token_store.issue("ci", ("viewer",))

    with pytest.raises(errors.AlreadyExists, match="'ci' already exists"):
        token_store.issue("ci", ("admin",))

    assert token_store.list() == [first]


def test_datetimes_are_aware_utc_whatever_the_offset_given(token_store: tokens.TokenStore) -> None:
    """SQLite keeps no offset: an expiry given at +05:00 must still expire at the same instant."""
    expiry = (T0 + timedelta(hours=1)).astimezone(PLUS5)  # 18:00+05:00 == 13:00 UTC
    token, _ = token_store.issue("ci", ("viewer",), expires_at=expiry)
    token_store.issue("other", ("viewer",))
    token_store.revoke("other", now=T0.astimezone(PLUS5))

    ok = token_store.authenticate(token, now=T0 + timedelta(minutes=59))
    with pytest.raises(errors.Unauthenticated, match="expired"):
        token_store.authenticate(token, now=T0 + timedelta(minutes=61))
    with pytest.raises(errors.Unauthenticated, match="expired"):
        token_store.authenticate(token, now=(T0 + timedelta(minutes=61)).astimezone(PLUS5))

    assert ok.expires_at == expiry
    listed = {info.name: info for info in token_store.list()}
    assert listed["other"].revoked_at == T0
    for info in listed.values():
        for moment in (info.created_at, info.expires_at, info.revoked_at):
            assert moment is None or moment.utcoffset() == timedelta(0), info


# ----- URLs and connectivity -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nosuchdb://x", "unsupported database backend 'nosuchdb'"),
        ("mysql://user:s3cret-pw@localhost/db", "unsupported database backend 'mysql'"),
        ("not a url", "malformed"),
        ("", "malformed"),
        ("postgresql://user:s3cret-pw@localhost:notaport/db", "malformed"),
    ],
)
def test_a_bad_url_is_invalid_input(url: str, message: str) -> None:
    with pytest.raises(errors.InvalidInput, match=message) as caught:
        db.Database(url)

    assert "s3cret-pw" not in str(caught.value)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound (so nobody else takes it) but not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_unreachable_postgres_raises_without_the_password(closed_port: int) -> None:
    database = db.Database(f"postgresql://pilot:s3cret-pw@127.0.0.1:{closed_port}/pilothouse")
    try:
        with pytest.raises(errors.PilothouseError, match="cannot reach the database") as caught:
            database.migrate()
    finally:
        database.dispose()

    error = caught.value
    assert f"127.0.0.1:{closed_port}" in error.message
    shown = " ".join([str(error), repr(error), error.message, error.hint, str(error.to_dict())])
    assert "s3cret-pw" not in shown
    assert error.__cause__ is None
    assert error.__suppress_context__


def test_sqlite_creates_the_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "pilothouse.db"
    database = db.Database(f"sqlite:///{path}")
    try:
        database.migrate()
    finally:
        database.dispose()

    assert path.is_file()
