"""All database and media logic of the human study; the builder, CLI and rating UI only call :class:`StudyStore`.

The store is split along its jobs, one module each — ``database`` (engine, SQLite settings, sessions,
migrations), ``media`` (normalised, content-addressed image files), ``studies`` (studies and items), ``accounts``
(raters, tokens, sign-in), ``distribution`` (assignment plans and queues), ``ratings`` (validated answers) and
``exports`` (admin DataFrames) — and :class:`StudyStore` is their one public facade.
"""

from __future__ import annotations

from eval_human.store.accounts import Accounts, NewRater, RaterInfo, hash_token
from eval_human.store.database import (
    MIGRATIONS_DIR,
    SQLITE_BUSY_TIMEOUT_MS,
    Database,
    default_media_dir,
    resolve_db_url,
)
from eval_human.store.distribution import Distribution, RaterItem, plan_assignments
from eval_human.store.errors import AuthenticationError, NotAssignedError, StudyError
from eval_human.store.exports import Exports
from eval_human.store.media import MEDIA_SIDE, MediaFiles
from eval_human.store.ratings import MAX_COMMENT_CHARS, MAX_SECONDS_SPENT, Ratings
from eval_human.store.studies import MAX_REPORT_CHARS, Studies

__all__ = [
    "MAX_COMMENT_CHARS",
    "MAX_REPORT_CHARS",
    "MAX_SECONDS_SPENT",
    "MEDIA_SIDE",
    "MIGRATIONS_DIR",
    "SQLITE_BUSY_TIMEOUT_MS",
    "AuthenticationError",
    "NewRater",
    "NotAssignedError",
    "RaterInfo",
    "RaterItem",
    "StudyError",
    "StudyStore",
    "default_media_dir",
    "hash_token",
    "plan_assignments",
    "resolve_db_url",
]


class StudyStore(Studies, Accounts, Distribution, Ratings, Exports, MediaFiles, Database):
    """The study database and image folder. Thread-safe: every call opens its own short session.

    Args:
        db: a SQLAlchemy URL or a SQLite file path.
        media_dir: folder of content-addressed images (default ``<sqlite file>.media``).
        upgrade: bring the schema to the newest Alembic revision on open (creates a new database).
        create: make the SQLite file (owner-only, 0600) when it does not exist; False refuses a missing one.
    """
