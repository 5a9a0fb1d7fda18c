"""Which rater sees which item, in which order: assignment plans, queues and what a rater may see of an item."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from eval_human.models import (
    KIND_ATTENTION_CHECK,
    Q_COMMENT,
    Q_CONSISTENCY,
    ROLE_RATER,
    STATUS_PENDING,
    Assignment,
    Item,
    Rater,
    Rating,
    Study,
)
from eval_human.store.errors import NotAssignedError, StudyError


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


class Distribution:
    """Queues of raters (needs Database's sessions and MediaFiles' ``image_path``)."""

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
