"""Studies and their items (image-report pairs with a hidden source)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from PIL import Image
from sqlalchemy import func, select

from eval_human.models import ITEM_KINDS, KIND_ATTENTION_CHECK, ROLE_RATER, Item, Rater, Study
from eval_human.store.errors import StudyError

MAX_REPORT_CHARS = 20000


class Studies:
    """Create studies and add items (needs Database, MediaFiles and Distribution)."""

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
