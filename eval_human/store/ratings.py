"""Answers: validated, written in one short transaction, one row per (rater, item, question)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from eval_human.models import (
    Q_COMMENT,
    Q_CONSISTENCY,
    Q_IMAGE_REALISM,
    Q_REPORT_PLAUSIBILITY,
    STATUS_DISCARDED,
    STATUS_SUBMITTED,
    Item,
    Rating,
    Study,
    utcnow,
)
from eval_human.store.errors import StudyError

MAX_COMMENT_CHARS = 2000
MAX_SECONDS_SPENT = 24 * 3600.0


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


class Ratings:
    """Record a rater's answers (needs Database's sessions and Distribution's ``_assignment``)."""

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
