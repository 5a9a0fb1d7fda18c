"""Admin views of a study as pandas DataFrames: progress per rater, items with their source, ratings."""

from __future__ import annotations

from sqlalchemy import func, select

from eval_human.models import ROLE_RATER, STATUS_DISCARDED, STATUS_SUBMITTED, Assignment, Item, Rater, Rating


class Exports:
    """Unblinded frames for the admin (needs Database's sessions)."""

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
