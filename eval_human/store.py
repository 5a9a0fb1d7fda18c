"""All database and media logic of the human study; the builder, CLI and rating UI only call :class:`StudyStore`.

SQLite is the default (any SQLAlchemy URL works). Every SQLite connection gets WAL journaling, a busy timeout and
foreign keys; writes run in short ``BEGIN IMMEDIATE`` transactions so that concurrent raters queue on the write lock
instead of failing when a read transaction tries to upgrade. Images are stored content-addressed
(``<media_dir>/<sha256>.png``), re-encoded without metadata so no file name or PNG text chunk can leak the source.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import random
import secrets
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import Engine, create_engine, delete, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from eval_human.models import (
    ITEM_KINDS,
    KIND_ATTENTION_CHECK,
    Q_COMMENT,
    Q_CONSISTENCY,
    Q_IMAGE_REALISM,
    Q_REPORT_PLAUSIBILITY,
    ROLE_ADMIN,
    ROLE_RATER,
    STATUS_DISCARDED,
    STATUS_PENDING,
    STATUS_SUBMITTED,
    Assignment,
    Item,
    Rater,
    Rating,
    Study,
    utcnow,
)

MAX_COMMENT_CHARS = 2000
MAX_REPORT_CHARS = 20000
MAX_SECONDS_SPENT = 24 * 3600.0
# Every item's image is stored, and served, as a MEDIA_SIDE x MEDIA_SIDE RGB PNG without compression or metadata:
# all media files then have the same bytes count and header, so neither the file size (a generated 64 px image
# compresses better than a 128 px scan) nor its mode or encoder settings can tell a rater where a pair came from.
MEDIA_SIDE = 256
SQLITE_BUSY_TIMEOUT_MS = 30000
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class StudyError(ValueError):
    """Bad input to the study store; the message names the offending value. Nothing was written."""


class AuthenticationError(StudyError):
    """A token (or login) that matches no rater."""


class NotAssignedError(StudyError):
    """A rater tried to see or rate an item that is not in their assignment."""


@dataclass(frozen=True)
class RaterInfo:
    """Who is signed in: enough to scope every later call, nothing secret."""

    id: int
    name: str
    study_id: int
    role: str


@dataclass(frozen=True)
class NewRater:
    """A rater just created, with the clear-text token that is shown exactly once and stored only hashed."""

    id: int
    name: str
    role: str
    token: str


@dataclass(frozen=True)
class RaterItem:
    """What a rater may see of one assigned item: no source, no other rater's answers.

    ``answers`` holds this rater's own current answers (question → score or text) and ``cannot_judge``.
    """

    position: int
    n_items: int
    n_done: int
    item_id: int
    image_path: Path
    report: str
    likert_max: int
    answers: dict[str, Any]


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a rater token (tokens are 144-bit random, so no salt or slow hash is needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


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


def _upsert_rating(session: Session, values: dict[str, Any]) -> None:
    """Insert a rating or update the existing (rater, item, question) row, summing the time spent."""
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(Rating).values(**values)
        excluded = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[Rating.rater_id, Rating.item_id, Rating.question],
            set_={
                "score": excluded.score,
                "text": excluded.text,
                "cannot_judge": excluded.cannot_judge,
                "seconds_spent": func.coalesce(
                    Rating.seconds_spent + excluded.seconds_spent,
                    excluded.seconds_spent,
                    Rating.seconds_spent,
                ),
                "updated_at": excluded.updated_at,
            },
        )
        session.execute(stmt)
        return
    # Portable fallback for other backends: the row is locked by the surrounding write transaction.
    existing = session.scalar(
        select(Rating).where(
            Rating.rater_id == values["rater_id"],
            Rating.item_id == values["item_id"],
            Rating.question == values["question"],
        )
    )
    if existing is None:
        session.add(Rating(**values))
        return
    for key in ("score", "text", "cannot_judge", "updated_at"):
        setattr(existing, key, values[key])
    if values["seconds_spent"] is not None:
        existing.seconds_spent = (existing.seconds_spent or 0.0) + values["seconds_spent"]


def plan_assignments(
    item_ids: Sequence[int],
    rater_ids: Sequence[int],
    overlap: int,
    rng: random.Random,
    *,
    every_rater_item_ids: Sequence[int] = (),
    current_load: Mapping[int, int] | None = None,
) -> dict[int, list[int]]:
    """Give each item to ``overlap`` distinct raters, least-loaded first (ties broken at random).

    Items in ``every_rater_item_ids`` (attention checks) go to every rater. Returns rater id → item ids in the
    order drawn (callers shuffle per rater).
    """
    if not rater_ids:
        raise StudyError("a study needs at least one rater to assign items to")
    if overlap < 1 or overlap > len(rater_ids):
        raise StudyError(f"overlap={overlap} must be between 1 and the number of raters ({len(rater_ids)})")
    load = {rater: (current_load or {}).get(rater, 0) for rater in rater_ids}
    plan: dict[int, list[int]] = {rater: [] for rater in rater_ids}
    shuffled = list(item_ids)
    rng.shuffle(shuffled)
    for item in shuffled:
        chosen = sorted(rater_ids, key=lambda r: (load[r], rng.random()))[:overlap]
        for rater in chosen:
            plan[rater].append(item)
            load[rater] += 1
    for item in every_rater_item_ids:
        for rater in rater_ids:
            plan[rater].append(item)
    return plan


class StudyStore:
    """The study database and image folder. Thread-safe: every call opens its own short session.

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

    # ------------------------------------------------------------------ plumbing

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

    # ------------------------------------------------------------------ media

    def put_image(self, image: Image.Image) -> str:
        """Store ``image`` as the study's normalised media file (see ``MEDIA_SIDE``) named by its SHA-256; returns
        the hex digest."""
        if not isinstance(image, Image.Image):
            raise StudyError(f"expected a PIL image, got {type(image).__name__}")
        clean = image.convert("RGB")
        if clean.size != (MEDIA_SIDE, MEDIA_SIDE):
            clean = clean.resize((MEDIA_SIDE, MEDIA_SIDE), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        # no pnginfo, no compression: nothing but pixels leaves the source, in a file of fixed length
        clean.save(buffer, format="PNG", compress_level=0)
        data = buffer.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        path = self.image_path(digest)
        if not path.exists():
            self.media_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Write-then-rename so a concurrent reader never sees half a file.
            fd, tmp = tempfile.mkstemp(dir=self.media_dir, suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        return digest

    def image_path(self, sha256: str) -> Path:
        """Path of a stored image by digest."""
        return self.media_dir / f"{sha256}.png"

    # ------------------------------------------------------------------ studies, items, raters

    def create_study(
        self,
        name: str,
        *,
        description: str = "",
        likert_max: int = 5,
        overlap: int = 2,
        seed: int = 0,
        attention_max_score: int = 2,
        settings: Mapping[str, Any] | None = None,
    ) -> int:
        """Create an empty study; returns its id. ``name`` must be new."""
        if not name or not name.strip():
            raise StudyError("study name must be a non-empty string")
        if not 2 <= likert_max <= 10:
            raise StudyError(f"likert_max={likert_max} must be between 2 and 10")
        if overlap < 1:
            raise StudyError(f"overlap={overlap} must be at least 1")
        if not 1 <= attention_max_score < likert_max:
            raise StudyError(f"attention_max_score={attention_max_score} must be in [1, {likert_max - 1}]")
        with self._write() as session:
            if session.scalar(select(Study.id).where(Study.name == name)) is not None:
                raise StudyError(f"a study named {name!r} already exists")
            study = Study(
                name=name,
                description=description,
                likert_max=likert_max,
                overlap=overlap,
                seed=seed,
                attention_max_score=attention_max_score,
                settings=dict(settings or {}),
            )
            session.add(study)
            session.flush()
            return study.id

    def study_id_by_name(self, name: str) -> int:
        """Id of the study called ``name``."""
        with self._read() as session:
            study_id = session.scalar(select(Study.id).where(Study.name == name))
        if study_id is None:
            raise StudyError(f"no study named {name!r}")
        return study_id

    def study_info(self, study_id: int) -> dict[str, Any]:
        """Study settings and counts as a plain dict."""
        with self._read() as session:
            study = session.get(Study, study_id)
            if study is None:
                raise StudyError(f"no study with id {study_id}")
            n_items = session.scalar(select(func.count(Item.id)).where(Item.study_id == study_id))
            n_raters = session.scalar(
                select(func.count(Rater.id)).where(Rater.study_id == study_id, Rater.role == ROLE_RATER)
            )
            return {
                "id": study.id,
                "name": study.name,
                "description": study.description,
                "likert_max": study.likert_max,
                "overlap": study.overlap,
                "seed": study.seed,
                "attention_max_score": study.attention_max_score,
                "settings": dict(study.settings or {}),
                "n_items": n_items,
                "n_raters": n_raters,
            }

    def add_item(
        self,
        study_id: int,
        *,
        image: Image.Image,
        report: str,
        kind: str,
        source: Mapping[str, Any],
        external_id: str | None = None,
        domain: str | None = None,
        assign: bool = False,
    ) -> int:
        """Store one pair; with ``assign`` it also joins ``overlap`` raters' queues (all raters for attention checks).

        ``source`` is the hidden provenance, e.g. ``{"system": "medim", "checkpoint": ..., "settings": {...}}``.
        """
        if kind not in ITEM_KINDS:
            raise StudyError(f"item kind {kind!r} is not one of {ITEM_KINDS}")
        if not isinstance(report, str) or not report.strip():
            raise StudyError(f"report must be a non-empty string, got {report!r}")
        if len(report) > MAX_REPORT_CHARS:
            raise StudyError(f"report has {len(report)} characters (max {MAX_REPORT_CHARS})")
        source = dict(source)
        label = str(source.get("system") or kind)
        digest = self.put_image(image)
        with self._write() as session:
            study = session.get(Study, study_id)
            if study is None:
                raise StudyError(f"no study with id {study_id}")
            item = Item(
                study_id=study_id,
                external_id=external_id or secrets.token_hex(8),
                image_sha256=digest,
                report=report.strip(),
                domain=domain,
                kind=kind,
                source_label=label,
                source=source,
            )
            session.add(item)
            session.flush()
            if assign:
                if kind == KIND_ATTENTION_CHECK:
                    self._assign_new_items(session, study, [], [item.id])
                else:
                    self._assign_new_items(session, study, [item.id])
            return item.id

    def add_raters(self, study_id: int, names: Sequence[str], *, role: str = ROLE_RATER) -> list[NewRater]:
        """Create raters (or admins) with fresh tokens; the clear tokens are returned once and never stored."""
        if role not in (ROLE_RATER, ROLE_ADMIN):
            raise StudyError(f"role {role!r} must be {ROLE_RATER!r} or {ROLE_ADMIN!r}")
        names = [str(n).strip() for n in names]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise StudyError(f"rater names must be non-empty and distinct, got {names!r}")
        created = []
        with self._write() as session:
            if session.get(Study, study_id) is None:
                raise StudyError(f"no study with id {study_id}")
            taken = set(
                session.scalars(select(Rater.name).where(Rater.study_id == study_id, Rater.name.in_(names)))
            )
            if taken:
                raise StudyError(f"rater name(s) already used in this study: {sorted(taken)}")
            for name in names:
                token = secrets.token_urlsafe(18)
                rater = Rater(study_id=study_id, name=name, role=role, token_hash=hash_token(token))
                session.add(rater)
                session.flush()
                created.append(NewRater(id=rater.id, name=name, role=role, token=token))
        return created

    def assign_all(self, study_id: int) -> dict[int, int]:
        """Distribute every not-yet-assigned item (first assignment of a study); returns rater id → items assigned.

        Each rater's queue is shuffled with a per-rater generator derived from the study seed, so orders differ
        between raters but are reproducible.
        """
        with self._write() as session:
            study = session.get(Study, study_id)
            if study is None:
                raise StudyError(f"no study with id {study_id}")
            assigned = select(Assignment.item_id)
            unassigned = session.execute(
                select(Item.id, Item.kind)
                .where(Item.study_id == study_id, Item.id.not_in(assigned))
                .order_by(Item.id)
            ).all()
            checks = [i for i, kind in unassigned if kind == KIND_ATTENTION_CHECK]
            regular = [i for i, kind in unassigned if kind != KIND_ATTENTION_CHECK]
            return self._assign_new_items(session, study, regular, checks, shuffle_queue=True)

    def assign_new_raters(self, study_id: int, rater_ids: Sequence[int]) -> dict[int, int]:
        """Give raters added to a running study a fair share: the least-covered regular items and every check.

        Each new rater gets ``ceil(n_regular_items * overlap / n_raters)`` items (shuffled), so coverage grows
        where it is thinnest; returns rater id → items assigned.
        """
        with self._write() as session:
            study = session.get(Study, study_id)
            if study is None:
                raise StudyError(f"no study with id {study_id}")
            n_raters = session.scalar(
                select(func.count(Rater.id)).where(Rater.study_id == study_id, Rater.role == ROLE_RATER)
            )
            coverage = session.execute(
                select(Item.id, Item.kind, func.count(Assignment.id))
                .join(Assignment, Assignment.item_id == Item.id, isouter=True)
                .where(Item.study_id == study_id)
                .group_by(Item.id)
            ).all()
            checks = [item for item, kind, _ in coverage if kind == KIND_ATTENTION_CHECK]
            regular = [(count, item) for item, kind, count in coverage if kind != KIND_ATTENTION_CHECK]
            share = math.ceil(len(regular) * study.overlap / max(n_raters, 1))
            counts = {}
            for rater_id in rater_ids:
                rater = session.get(Rater, rater_id)
                if rater is None or rater.study_id != study_id or rater.role != ROLE_RATER:
                    raise StudyError(f"rater {rater_id} is not a rater of study {study_id}")
                have = set(session.scalars(select(Assignment.item_id).where(Assignment.rater_id == rater_id)))
                rng = random.Random(f"{study.seed}:new:{rater_id}")
                ranked = sorted((c, rng.random(), i) for c, i in regular if i not in have)
                chosen = [i for _, _, i in ranked[:share]] + [i for i in checks if i not in have]
                rng.shuffle(chosen)
                start = len(have)
                for offset, item_id in enumerate(chosen):
                    session.add(Assignment(rater_id=rater_id, item_id=item_id, position=start + offset))
                regular = [(c + 1 if i in chosen else c, i) for c, i in regular]
                counts[rater_id] = len(chosen)
            return counts

    def _assign_new_items(
        self,
        session: Session,
        study: Study,
        item_ids: list[int],
        every_rater_item_ids: list[int] = (),
        *,
        shuffle_queue: bool = False,
    ) -> dict[int, int]:
        """Append items to raters' queues (``overlap`` raters each; every rater for attention checks)."""
        rater_ids = list(
            session.scalars(
                select(Rater.id)
                .where(Rater.study_id == study.id, Rater.role == ROLE_RATER)
                .order_by(Rater.id)
            )
        )
        if not item_ids and not every_rater_item_ids:
            return {}
        if not rater_ids:
            raise StudyError(f"study {study.name!r} has no raters yet; add raters before assigning items")
        load = dict(
            session.execute(
                select(Assignment.rater_id, func.count(Assignment.id))
                .where(Assignment.rater_id.in_(rater_ids))
                .group_by(Assignment.rater_id)
            ).all()
        )
        rng = random.Random(f"{study.seed}:{study.id}:{len(load)}:{sum(load.values())}")
        overlap = min(study.overlap, len(rater_ids))
        plan = plan_assignments(
            item_ids, rater_ids, overlap, rng, every_rater_item_ids=every_rater_item_ids, current_load=load
        )
        next_position = dict(
            session.execute(
                select(Assignment.rater_id, func.max(Assignment.position))
                .where(Assignment.rater_id.in_(rater_ids))
                .group_by(Assignment.rater_id)
            ).all()
        )
        counts = {}
        for rater_id, items in plan.items():
            if shuffle_queue:
                random.Random(f"{study.seed}:{rater_id}:{len(items)}").shuffle(items)
            start = next_position.get(rater_id, -1) + 1
            for offset, item_id in enumerate(items):
                session.add(Assignment(rater_id=rater_id, item_id=item_id, position=start + offset))
            counts[rater_id] = len(items)
        return counts

    # ------------------------------------------------------------------ sign-in

    def authenticate(self, token: str) -> RaterInfo:
        """The rater or admin holding ``token``; raises :class:`AuthenticationError` for anything else."""
        if not isinstance(token, str) or not token.strip():
            raise AuthenticationError("no token given: enter the token you received for this study")
        token = token.strip()
        if len(token) > 200:
            raise AuthenticationError(f"unknown token (length {len(token)})")
        digest = hash_token(token)
        with self._write() as session:
            rater = session.scalar(select(Rater).where(Rater.token_hash == digest))
            if rater is None:
                raise AuthenticationError("unknown token: check it was copied completely")
            rater.last_seen_at = utcnow()
            return RaterInfo(id=rater.id, name=rater.name, study_id=rater.study_id, role=rater.role)

    def rater_for_login(self, username: str, study_id: int | None = None) -> RaterInfo:
        """The rater whose name equals an already verified login (Gradio auth, HF OAuth)."""
        with self._read() as session:
            query = select(Rater).where(Rater.name == username)
            if study_id is not None:
                query = query.where(Rater.study_id == study_id)
            raters = session.scalars(query).all()
            if not raters:
                raise AuthenticationError(f"login {username!r} is not a rater of this study")
            if len(raters) > 1:
                raise AuthenticationError(
                    f"login {username!r} is a rater in several studies; sign in with a token"
                )
            rater = raters[0]
            return RaterInfo(id=rater.id, name=rater.name, study_id=rater.study_id, role=rater.role)

    def check_login(self, username: str, token: str) -> bool:
        """Gradio ``auth=`` callable: the password is the rater's token and must belong to ``username``."""
        try:
            rater = self.authenticate(token)
        except AuthenticationError:
            return False
        return rater.name == username

    # ------------------------------------------------------------------ rating

    def _assignment(self, session: Session, rater_id: int, item_id: int) -> Assignment:
        assignment = session.scalar(
            select(Assignment).where(Assignment.rater_id == rater_id, Assignment.item_id == item_id)
        )
        if assignment is None:
            raise NotAssignedError(f"item {item_id} is not assigned to rater {rater_id}")
        return assignment

    def queue_length(self, rater_id: int) -> int:
        """Number of items in a rater's queue."""
        with self._read() as session:
            return (
                session.scalar(select(func.count(Assignment.id)).where(Assignment.rater_id == rater_id)) or 0
            )

    def first_pending_position(self, rater_id: int) -> int:
        """Where a rater resumes: the first position not yet answered (the last item when all are done)."""
        with self._read() as session:
            pending = session.scalar(
                select(func.min(Assignment.position)).where(
                    Assignment.rater_id == rater_id, Assignment.status == STATUS_PENDING
                )
            )
            if pending is not None:
                return pending
            last = session.scalar(
                select(func.max(Assignment.position)).where(Assignment.rater_id == rater_id)
            )
            return last if last is not None else 0

    def rater_item(self, rater_id: int, position: int) -> RaterItem:
        """The item at ``position`` of the rater's own queue, with only this rater's answers."""
        with self._read() as session:
            n_items = (
                session.scalar(select(func.count(Assignment.id)).where(Assignment.rater_id == rater_id)) or 0
            )
            if n_items == 0:
                raise NotAssignedError(f"rater {rater_id} has no assigned items")
            if not isinstance(position, int) or not 0 <= position < n_items:
                raise NotAssignedError(f"position {position!r} is outside this rater's {n_items} items")
            row = session.execute(
                select(Assignment, Item, Study.likert_max)
                .join(Item, Item.id == Assignment.item_id)
                .join(Study, Study.id == Item.study_id)
                .where(Assignment.rater_id == rater_id, Assignment.position == position)
            ).one()
            assignment, item, likert_max = row
            n_done = session.scalar(
                select(func.count(Assignment.id)).where(
                    Assignment.rater_id == rater_id, Assignment.status != STATUS_PENDING
                )
            )
            answers: dict[str, Any] = {"cannot_judge": False}
            for rating in session.scalars(
                select(Rating).where(Rating.rater_id == rater_id, Rating.item_id == item.id)
            ):
                answers[rating.question] = rating.text if rating.question == Q_COMMENT else rating.score
                if rating.question == Q_CONSISTENCY:
                    answers["cannot_judge"] = rating.cannot_judge
            return RaterItem(
                position=position,
                n_items=n_items,
                n_done=n_done or 0,
                item_id=item.id,
                image_path=self.image_path(item.image_sha256),
                report=item.report,
                likert_max=likert_max,
                answers=answers,
            )

    def submit_rating(
        self,
        rater_id: int,
        item_id: int,
        consistency: int | None = None,
        *,
        image_realism: int | None = None,
        report_plausibility: int | None = None,
        comment: str | None = None,
        cannot_judge: bool = False,
        seconds_spent: float | None = None,
    ) -> None:
        """Record (or replace) a rater's answers for one assigned item, in one short transaction.

        ``consistency`` is required unless ``cannot_judge``; optional answers left ``None`` remove an earlier
        answer, so the stored state always equals the rater's last submission. Raises :class:`StudyError`
        (nothing written) for an unassigned item, a score outside ``1..likert_max`` or a comment over
        ``MAX_COMMENT_CHARS`` characters.
        """
        scores = {
            Q_CONSISTENCY: consistency,
            Q_IMAGE_REALISM: image_realism,
            Q_REPORT_PLAUSIBILITY: report_plausibility,
        }
        for question, value in scores.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise StudyError(f"{question} must be an integer score, got {value!r}")
        if cannot_judge and consistency is not None:
            raise StudyError(f"'cannot judge' and a consistency score ({consistency}) exclude each other")
        if not cannot_judge and consistency is None:
            raise StudyError("a consistency score is required (or mark the pair as 'cannot judge')")
        if comment is not None and not isinstance(comment, str):
            raise StudyError(f"comment must be text, got {type(comment).__name__}")
        comment = (comment or "").strip() or None
        if comment is not None and len(comment) > MAX_COMMENT_CHARS:
            raise StudyError(f"comment has {len(comment)} characters (max {MAX_COMMENT_CHARS})")
        if seconds_spent is not None and not 0 <= float(seconds_spent) <= MAX_SECONDS_SPENT:
            raise StudyError(f"seconds_spent={seconds_spent!r} must be between 0 and {MAX_SECONDS_SPENT:.0f}")
        seconds = float(seconds_spent) if seconds_spent is not None else None

        with self._write() as session:
            assignment = self._assignment(session, rater_id, item_id)
            likert_max = session.scalar(
                select(Study.likert_max).join(Item, Item.study_id == Study.id).where(Item.id == item_id)
            )
            for question, value in scores.items():
                if value is not None and not 1 <= value <= likert_max:
                    # Raising inside the transaction rolls it back: nothing is written.
                    raise StudyError(f"{question}={value} is outside the scale 1..{likert_max}")
            now = utcnow()
            answers: dict[str, tuple[int | None, str | None]] = {
                q: (v, None) for q, v in scores.items() if v is not None or q == Q_CONSISTENCY
            }
            if comment is not None:
                answers[Q_COMMENT] = (None, comment)
            for question, (score, text_value) in answers.items():
                _upsert_rating(
                    session,
                    {
                        "rater_id": rater_id,
                        "item_id": item_id,
                        "question": question,
                        "score": score,
                        "text": text_value,
                        "cannot_judge": bool(cannot_judge) and question == Q_CONSISTENCY,
                        "seconds_spent": seconds if question == Q_CONSISTENCY else None,
                        "created_at": now,
                        "updated_at": now,
                    },
                )
            dropped = [q for q in (Q_IMAGE_REALISM, Q_REPORT_PLAUSIBILITY, Q_COMMENT) if q not in answers]
            session.execute(
                delete(Rating).where(
                    Rating.rater_id == rater_id, Rating.item_id == item_id, Rating.question.in_(dropped)
                )
            )
            assignment.status = STATUS_DISCARDED if cannot_judge else STATUS_SUBMITTED
            assignment.updated_at = now

    # ------------------------------------------------------------------ admin: progress and exports

    def progress(self, study_id: int):
        """Per-rater progress as a DataFrame: rater, assigned, submitted, cannot_judge, pending, last_seen."""
        import pandas as pd

        with self._read() as session:
            rows = session.execute(
                select(
                    Rater.name,
                    func.count(Assignment.id),
                    func.count(Assignment.id).filter(Assignment.status == STATUS_SUBMITTED),
                    func.count(Assignment.id).filter(Assignment.status == STATUS_DISCARDED),
                    Rater.last_seen_at,
                )
                .join(Assignment, Assignment.rater_id == Rater.id, isouter=True)
                .where(Rater.study_id == study_id, Rater.role == ROLE_RATER)
                .group_by(Rater.id)
                .order_by(Rater.name)
            ).all()
        frame = pd.DataFrame(rows, columns=["rater", "assigned", "submitted", "cannot_judge", "last_seen"])
        frame.insert(4, "pending", frame["assigned"] - frame["submitted"] - frame["cannot_judge"])
        return frame

    def items_frame(self, study_id: int):
        """All items with their unblinded source (admin/export only)."""
        import pandas as pd

        with self._read() as session:
            items = session.scalars(select(Item).where(Item.study_id == study_id).order_by(Item.id)).all()
            rows = [
                {
                    "item_id": i.id,
                    "external_id": i.external_id,
                    "kind": i.kind,
                    "source_label": i.source_label,
                    "domain": i.domain,
                    "image_sha256": i.image_sha256,
                    "report": i.report,
                    "source": i.source,
                }
                for i in items
            ]
        return pd.DataFrame(
            rows,
            columns=[
                "item_id",
                "external_id",
                "kind",
                "source_label",
                "domain",
                "image_sha256",
                "report",
                "source",
            ],
        )

    def ratings_frame(self, study_id: int):
        """Every rating in long format (one row per rater × item × question) with the unblinded item source."""
        import json

        import pandas as pd

        with self._read() as session:
            rows = session.execute(
                select(
                    Rating.rater_id,
                    Rater.name,
                    Rating.item_id,
                    Item.external_id,
                    Item.kind,
                    Item.source_label,
                    Item.domain,
                    Item.source,
                    Rating.question,
                    Rating.score,
                    Rating.text,
                    Rating.cannot_judge,
                    Rating.seconds_spent,
                    Rating.created_at,
                    Rating.updated_at,
                )
                .join(Rater, Rater.id == Rating.rater_id)
                .join(Item, Item.id == Rating.item_id)
                .where(Rater.study_id == study_id)
                .order_by(Rating.rater_id, Rating.item_id, Rating.question)
            ).all()
        columns = [
            "rater_id",
            "rater",
            "item_id",
            "external_id",
            "kind",
            "source_label",
            "domain",
            "source",
            "question",
            "score",
            "text",
            "cannot_judge",
            "seconds_spent",
            "created_at",
            "updated_at",
        ]
        frame = pd.DataFrame(rows, columns=columns)
        frame["source"] = frame["source"].map(lambda s: json.dumps(s, sort_keys=True))
        frame["score"] = frame["score"].astype("Int64")
        frame["cannot_judge"] = frame["cannot_judge"].astype(bool)
        return frame

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` result (``"ok"`` when healthy); SQLite only."""
        if not self.is_sqlite:
            raise StudyError(f"integrity_check is SQLite-only, this store uses {self.url!r}")
        with self.engine.connect() as conn:
            return conn.execute(text("PRAGMA integrity_check")).scalar_one()
