"""SQLAlchemy 2 declarative schema of the human consistency study: studies, items, raters, assignments, ratings.

An *item* is one image–report pair shown to raters; its ``source`` (which system, checkpoint and settings made it,
or ``"real"``, or an attention check) is stored here and never leaves the store towards a rater. An *assignment*
puts an item into one rater's randomised queue at a fixed position. A *rating* is one answer of one rater to one
question about one item; the composite foreign key to ``assignments`` makes a rating of an unassigned item
impossible at the database level, and ``(rater_id, item_id, question)`` is unique so a changed answer is an upsert.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Item kinds: what the hidden source of a pair is, coarsely.
KIND_GENERATED = "generated"
KIND_REAL = "real"
KIND_ATTENTION_CHECK = "attention_check"
ITEM_KINDS = (KIND_GENERATED, KIND_REAL, KIND_ATTENTION_CHECK)

# Rater roles: an admin has no assignments and sees progress and exports.
ROLE_RATER = "rater"
ROLE_ADMIN = "admin"

# Assignment statuses (Argilla's response statuses, "discarded" meaning the rater could not judge the pair).
STATUS_PENDING = "pending"
STATUS_SUBMITTED = "submitted"
STATUS_DISCARDED = "discarded"

# Questions asked per item. Likert questions hold ``score``; the comment holds ``text``.
Q_CONSISTENCY = "consistency"
Q_IMAGE_REALISM = "image_realism"
Q_REPORT_PLAUSIBILITY = "report_plausibility"
Q_COMMENT = "comment"
LIKERT_QUESTIONS = (Q_CONSISTENCY, Q_IMAGE_REALISM, Q_REPORT_PLAUSIBILITY)
QUESTIONS = (*LIKERT_QUESTIONS, Q_COMMENT)


def utcnow() -> datetime:
    """Current time in UTC (timezone-aware; SQLite stores it without the offset)."""
    return datetime.now(timezone.utc)


# Explicit constraint names keep Alembic migrations deterministic across backends.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base holding the study schema's metadata."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Study(Base):
    """One study: a set of items, raters and their assignments, with the Likert scale and overlap used."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    likert_max: Mapped[int] = mapped_column(Integer, default=5)
    overlap: Mapped[int] = mapped_column(Integer, default=2)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    # Consistency at or below this score counts as having caught a deliberately mismatched pair.
    attention_max_score: Mapped[int] = mapped_column(Integer, default=2)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    items: Mapped[list[Item]] = relationship(back_populates="study", cascade="all, delete-orphan")
    raters: Mapped[list[Rater]] = relationship(back_populates="study", cascade="all, delete-orphan")

    __table_args__ = (
        CheckConstraint("likert_max >= 2 AND likert_max <= 10", name="likert_range"),
        CheckConstraint("overlap >= 1", name="overlap_positive"),
    )


class Item(Base):
    """An image–report pair; ``source``/``source_label``/``kind`` are the blinded ground truth of where it came from."""

    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(200), index=True)
    image_sha256: Mapped[str] = mapped_column(String(64))
    report: Mapped[str] = mapped_column(Text)
    domain: Mapped[str | None] = mapped_column(String(50), nullable=True)
    kind: Mapped[str] = mapped_column(String(20))
    source_label: Mapped[str] = mapped_column(String(200), index=True)
    source: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    study: Mapped[Study] = relationship(back_populates="items")

    __table_args__ = (
        CheckConstraint("kind IN ('generated', 'real', 'attention_check')", name="kind_known"),
        CheckConstraint("length(image_sha256) = 64", name="sha256_length"),
    )


class Rater(Base):
    """A rater (or admin) of one study, who signs in with a token stored only as its SHA-256."""

    __tablename__ = "raters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default=ROLE_RATER)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(nullable=True)

    study: Mapped[Study] = relationship(back_populates="raters")

    __table_args__ = (
        UniqueConstraint("study_id", "name"),
        CheckConstraint("role IN ('rater', 'admin')", name="role_known"),
    )


class Assignment(Base):
    """Item ``item_id`` sits at ``position`` (0-based) in rater ``rater_id``'s own randomised order."""

    __tablename__ = "assignments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=STATUS_PENDING)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("rater_id", "item_id"),
        UniqueConstraint("rater_id", "position"),
        CheckConstraint("status IN ('pending', 'submitted', 'discarded')", name="status_known"),
        CheckConstraint("position >= 0", name="position_nonnegative"),
    )


class Rating(Base):
    """One answer: a Likert ``score`` or a comment ``text``; ``cannot_judge`` marks a consistency row left unscored."""

    __tablename__ = "ratings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rater_id: Mapped[int] = mapped_column(Integer, index=True)
    item_id: Mapped[int] = mapped_column(Integer, index=True)
    question: Mapped[str] = mapped_column(String(50))
    score: Mapped[int | None] = mapped_column(Integer, nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    cannot_judge: Mapped[bool] = mapped_column(Boolean, default=False)
    # Seconds the rater spent on the item, summed over every submission of this answer (Label Studio's lead time).
    seconds_spent: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("rater_id", "item_id", "question"),
        # A rating can only exist for an item that is in this rater's assignment.
        ForeignKeyConstraint(
            ["rater_id", "item_id"],
            ["assignments.rater_id", "assignments.item_id"],
            ondelete="CASCADE",
        ),
        CheckConstraint(
            "question IN ('consistency', 'image_realism', 'report_plausibility', 'comment')",
            name="question_known",
        ),
        CheckConstraint("score IS NULL OR score >= 1", name="score_positive"),
        CheckConstraint("seconds_spent IS NULL OR seconds_spent >= 0", name="seconds_nonnegative"),
    )
