"""The study database: engine, SQLite settings, short read/write sessions, migrations, integrity check.

SQLite is the default (any SQLAlchemy URL works). Every SQLite connection gets WAL journaling, a busy timeout and
foreign keys; writes run in short ``BEGIN IMMEDIATE`` transactions so that concurrent raters queue on the write lock
instead of failing when a read transaction tries to upgrade.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from eval_human.store.errors import StudyError

SQLITE_BUSY_TIMEOUT_MS = 30000
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def resolve_db_url(db: str | os.PathLike) -> str:
    """A SQLAlchemy URL from either a URL (``postgresql://...``, ``sqlite:///x.db``) or a plain file path."""
    value = os.fspath(db)
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def default_media_dir(db_url: str) -> Path:
    """``<db file>.media`` next to a SQLite file; other backends need an explicit media folder."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise StudyError(
            f"a media folder must be given for database URL {db_url!r} (only SQLite files have a default)"
        )
    return Path(url.database + ".media")


def _configure_sqlite(engine: Engine) -> None:
    """Pragmas on every connection and our own BEGIN (IMMEDIATE for writers) instead of sqlite3's implicit one."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001 - DB-API objects
        dbapi_connection.isolation_level = (
            None  # we emit BEGIN ourselves (SQLAlchemy's documented pysqlite recipe)
        )
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # FULL: a committed rating survives even a power cut, and rating writes are rare enough to afford the fsync.
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        mode = "IMMEDIATE" if conn.get_execution_options().get("eval_human_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """Engine and sessions of one study database (the base every part of :class:`StudyStore` builds on).

    Args:
        db: a SQLAlchemy URL or a SQLite file path.
        media_dir: folder of content-addressed images (default ``<sqlite file>.media``).
        upgrade: bring the schema to the newest Alembic revision on open (creates a new database).
        create: make the SQLite file (owner-only, 0600) when it does not exist; False refuses a missing one.
    """

    def __init__(
        self,
        db: str | os.PathLike,
        media_dir: str | os.PathLike | None = None,
        *,
        upgrade: bool = True,
        create: bool = True,
    ):
        self.url = resolve_db_url(db)
        self.media_dir = Path(media_dir) if media_dir is not None else default_media_dir(self.url)
        # unblinded exports written by the admin view: beside the media, owner-only like the database
        self.export_dir = self.media_dir.with_name(self.media_dir.name + "-exports")
        url = make_url(self.url)
        self.is_sqlite = url.get_backend_name() == "sqlite"
        engine_kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            if url.database and url.database != ":memory:":
                path = Path(url.database)
                if not path.is_file():
                    if not create:
                        raise StudyError(
                            f"no study database at {path}: check --db (only `create-study` makes a new one)"
                        )
                    path.parent.mkdir(parents=True, exist_ok=True)
                    # ratings and tokens are private: the file (and the -wal/-shm files SQLite gives the same
                    # mode) is readable by its owner only
                    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            # Enough pooled connections for a few dozen concurrent raters; each holds a write lock only briefly.
            engine_kwargs.update(pool_size=8, max_overflow=32, pool_timeout=60)
        self.engine = create_engine(self.url, **engine_kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._write_lock = threading.Lock() if self.is_sqlite else contextlib.nullcontext()
        self._read_sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(
            self.engine.execution_options(eval_human_write=True), expire_on_commit=False
        )
        if upgrade:
            self.upgrade()

    def alembic_config(self):
        """An Alembic ``Config`` pointing at this package's migrations and this store's URL."""
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return config

    def upgrade(self, revision: str = "head") -> None:
        """Apply Alembic migrations up to ``revision`` on this store's engine (idempotent)."""
        from alembic import command

        config = self.alembic_config()
        with self.engine.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            connection.commit()

    def dispose(self) -> None:
        """Close pooled connections (call before deleting or copying the database file)."""
        self.engine.dispose()

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        # SQLite allows one writer at a time. Threads of this process queue on a Python lock (instant hand-over)
        # rather than in SQLite's busy handler, which sleeps up to 100 ms between retries; other processes still
        # wait through busy_timeout.
        with self._write_lock, self._write_sessions.begin() as session:
            yield session

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with self._read_sessions.begin() as session:
            yield session

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` result (``"ok"`` when healthy); SQLite only."""
        if not self.is_sqlite:
            raise StudyError(f"integrity_check is SQLite-only, this store uses {self.url!r}")
        with self.engine.connect() as conn:
            return conn.execute(text("PRAGMA integrity_check")).scalar_one()
