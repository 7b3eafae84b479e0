"""Database engines, sessions and schema migrations.

SQLAlchemy 2 talks to the database; Alembic migrates it. SQLite (the embedded
default) runs in WAL mode with foreign keys on; PostgreSQL is selected by a
``postgresql://`` URL and driven by psycopg 3.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from pilothouse import errors

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def _normalise_url(url: str) -> str:
    """Pick psycopg 3 for plain ``postgresql://`` URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_db_engine(url: str) -> Engine:
    """Create an engine for ``url``; a malformed URL is an ``InvalidInput``."""
    try:
        parsed = make_url(_normalise_url(url))
    except (ArgumentError, ValueError):  # ValueError: a non-numeric port, e.g. "host:notaport"
        raise errors.InvalidInput(
            "the database URL is malformed",
            hint="use sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB",
        ) from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise errors.InvalidInput(
            f"unsupported database backend {parsed.get_backend_name()!r}",
            hint="Pilothouse stores its state in SQLite (default) or PostgreSQL",
        )
    return create_engine(parsed, pool_pre_ping=True)


class Database:
    """One store: an engine, a session factory and its migrations."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _alembic_config(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        return config

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        try:
            with self.engine.begin() as connection:
                config = self._alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except OperationalError as exc:
            raise errors.PilothouseError(
                f"cannot reach the database at {self.engine.url.render_as_string(hide_password=True)}",
                hint=f"check the database server is running and the URL is right ({exc.orig})",
            ) from None

    def table_names(self) -> list[str]:
        return inspect(self.engine).get_table_names()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any exception."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
