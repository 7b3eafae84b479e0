"""A real PostgreSQL for the store tests, and a fresh database per test on either backend.

``postgres_url`` (session) is ``PILOTHOUSE_TEST_POSTGRES_URL`` when set;
otherwise a private throwaway server from Debian's PostgreSQL 15 binaries:
``initdb`` into a temp dir, ``pg_ctl start`` on a free 127.0.0.1 port with a
private socket dir and fsync off, ``pg_ctl stop -m immediate`` and removal at
the end of the session. PostgreSQL refuses to run as root, so as root the
binaries run as the ``postgres`` OS user (``runuser``). Missing binaries fail
the tests with the install command; they never skip. ``PILOTHOUSE_TEST_PG_BIN``
overrides the binary directory (another PostgreSQL major version).

``store_url`` (function) is a fresh empty database on each backend: a SQLite
file in ``tmp_path``, or a uniquely named database created on the server and
dropped (``WITH (FORCE)``) afterwards. The server is only started when a
PostgreSQL-parametrized test runs.

Loaded by ``tests/conftest.py`` through ``pytest_plugins``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

PG_BIN = Path(os.environ.get("PILOTHOUSE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
URL_ENV = "PILOTHOUSE_TEST_POSTGRES_URL"
DATABASE = "pilothouse_test"
OS_USER = "postgres"
SCRATCH_MIN_FREE = 1 << 30  # a small /dev/shm (Docker's 64 MiB) cannot hold the cluster and its WAL
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _libpq(url: str) -> str:
    """``url`` as libpq understands it (no ``+driver`` suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _as_server_user() -> list[str]:
    return ["runuser", "-u", OS_USER, "--"] if os.geteuid() == 0 else []


def _run(args: list[str], *, what: str) -> None:
    result = subprocess.run([*_as_server_user(), *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"{what} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")


def _require_binaries() -> None:
    missing = [name for name in ("initdb", "pg_ctl", "postgres") if not (PG_BIN / name).is_file()]
    if missing:
        pytest.fail(
            f"PostgreSQL server binaries {missing} not found in {PG_BIN}; "
            "run `apt-get install postgresql` (Debian's PostgreSQL 15), "
            f"or point {URL_ENV} at a server"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            pytest.fail(f"no {OS_USER!r} OS user to run PostgreSQL as; run `apt-get install postgresql`")


def _scratch_dir() -> str | None:
    """A tmpfs (/dev/shm) when it has room: CREATE DATABASE takes ~0.03 s there, ~0.25 s on disk."""
    shm = "/dev/shm"
    try:
        stats = os.statvfs(shm)
    except OSError:
        return None
    roomy = stats.f_bavail * stats.f_frsize >= SCRATCH_MIN_FREE
    return shm if roomy and os.access(shm, os.W_OK | os.X_OK) else None  # None: tempfile's default (/tmp)


def _start_server(root: Path) -> int:
    """initdb + pg_ctl start in ``root``; return the port. Retries once if the port was taken."""
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    _run(
        [str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
        what="initdb",
    )
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(sockets, user=OS_USER)
    for _attempt in range(3):
        port = free_port()
        options = f"-k {sockets} -h 127.0.0.1 -p {port} -F"
        pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60"]
        result = subprocess.run(
            [*_as_server_user(), *pg_ctl, "-o", options, "start"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 0:
            return port
    server_log = log.read_text(errors="replace") if log.exists() else ""
    pytest.fail(f"pg_ctl start failed:\n{result.stdout}\n{result.stderr}\n--- server log ---\n{server_log}")


def _stop_server(root: Path) -> None:
    subprocess.run(
        [*_as_server_user(), str(PG_BIN / "pg_ctl"), "-D", str(root / "data"), "stop", "-m", "immediate"],
        capture_output=True,
        check=False,
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL database the session may create further databases from."""
    given = os.environ.get(URL_ENV)
    if given:
        yield given
        return
    _require_binaries()
    root = Path(tempfile.mkdtemp(prefix="pilothouse-pg-", dir=_scratch_dir()))
    started = False
    try:
        if os.geteuid() == 0:
            shutil.chown(root, user=OS_USER)
        port = _start_server(root)
        started = True
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        yield f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"
    finally:
        if started:
            _stop_server(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of a fresh, empty database on the parametrized backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pilothouse.db'}"
        return
    server: str = request.getfixturevalue("postgres_url")
    name = f"pilothouse_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(_libpq(server), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq(server), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
