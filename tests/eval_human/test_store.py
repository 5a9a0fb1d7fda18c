"""Store behaviour: rating, changing and resuming; blinding of what a rater sees; refusal of bad input."""

from __future__ import annotations

import dataclasses

import pytest
from PIL import Image
from sqlalchemy import text

from eval_human.store import (
    MAX_COMMENT_CHARS,
    AuthenticationError,
    NotAssignedError,
    StudyError,
    StudyStore,
    plan_assignments,
)


def _rater(store, built, name="r1"):
    token = next(r.token for r in built.raters if r.name == name)
    return store.authenticate(token)


def _snapshot(store):
    with store.engine.connect() as conn:
        ratings = conn.execute(text("SELECT * FROM ratings ORDER BY id")).all()
        statuses = conn.execute(text("SELECT id, status, updated_at FROM assignments ORDER BY id")).all()
    return ratings, statuses


def test_rate_change_and_resume(built_study):
    store, built = built_study
    rater = _rater(store, built)
    assert store.first_pending_position(rater.id) == 0
    first = store.rater_item(rater.id, 0)
    store.submit_rating(rater.id, first.item_id, 2, image_realism=4, comment="blurry", seconds_spent=3.0)
    assert store.first_pending_position(rater.id) == 1  # resumes after the rated pair
    store.submit_rating(rater.id, first.item_id, 5, seconds_spent=2.0)  # change: realism and comment dropped
    answers = store.rater_item(rater.id, 0).answers
    assert answers == {"cannot_judge": False, "consistency": 5}
    ratings = store.ratings_frame(built.study_id)
    mine = ratings[(ratings["rater_id"] == rater.id) & (ratings["item_id"] == first.item_id)]
    assert mine["question"].tolist() == ["consistency"]
    row = mine.iloc[0]
    assert row["seconds_spent"] == pytest.approx(5.0)  # lead time sums over edits
    assert row["updated_at"] >= row["created_at"]
    second = store.rater_item(rater.id, 1)
    store.submit_rating(rater.id, second.item_id, cannot_judge=True)
    assert store.rater_item(rater.id, 1).answers["cannot_judge"] is True
    progress = store.progress(built.study_id).set_index("rater").loc[rater.name]
    assert (progress["submitted"], progress["cannot_judge"]) == (1, 1)
    assert progress["pending"] == progress["assigned"] - 2


def test_rater_view_is_blinded():
    from eval_human.store import RaterItem

    fields = {f.name for f in dataclasses.fields(RaterItem)}
    assert not fields & {"source", "source_label", "kind", "external_id", "domain"}


def test_rater_sees_only_own_answers(built_study):
    store, built = built_study
    r1, r2 = _rater(store, built, "r1"), _rater(store, built, "r2")
    with store.engine.connect() as conn:
        shared = (
            conn.execute(
                text(
                    "SELECT a.item_id FROM assignments a JOIN assignments b ON a.item_id = b.item_id "
                    "WHERE a.rater_id = :x AND b.rater_id = :y"
                ),
                {"x": r1.id, "y": r2.id},
            )
            .scalars()
            .first()
        )
        position_r2 = conn.execute(
            text("SELECT position FROM assignments WHERE rater_id = :y AND item_id = :i"),
            {"y": r2.id, "i": shared},
        ).scalar()
    store.submit_rating(r1.id, shared, 1, comment="mine")
    assert store.rater_item(r2.id, position_r2).answers == {"cannot_judge": False}


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"consistency": 6}, StudyError, "consistency=6 is outside the scale 1..5"),
        ({"consistency": 0}, StudyError, "consistency=0"),
        ({"consistency": 3, "image_realism": 9}, StudyError, "image_realism=9"),
        ({"consistency": "4"}, StudyError, "integer score"),
        ({"consistency": True}, StudyError, "integer score"),
        ({"consistency": 3, "comment": "x" * (MAX_COMMENT_CHARS + 1)}, StudyError, "characters"),
        ({"consistency": 3, "cannot_judge": True}, StudyError, "exclude each other"),
        ({}, StudyError, "consistency score is required"),
        ({"consistency": 3, "seconds_spent": -1}, StudyError, "seconds_spent"),
    ],
)
def test_bad_ratings_are_refused_and_change_nothing(built_study, kwargs, error, message):
    store, built = built_study
    rater = _rater(store, built)
    item = store.rater_item(rater.id, 0)
    store.submit_rating(rater.id, item.item_id, 3, comment="before")
    before = _snapshot(store)
    with pytest.raises(error, match=message):
        store.submit_rating(rater.id, item.item_id, **kwargs)
    assert _snapshot(store) == before


def test_unknown_token_and_tampered_items_are_refused(built_study):
    store, built = built_study
    before = _snapshot(store)
    for token in ("", "   ", "not-a-token", built.raters[0].token + "x", "a" * 500):
        with pytest.raises(AuthenticationError):
            store.authenticate(token)
    rater = _rater(store, built)
    with store.engine.connect() as conn:
        foreign = (
            conn.execute(
                text(
                    "SELECT id FROM items WHERE id NOT IN (SELECT item_id FROM assignments WHERE rater_id = :r)"
                ),
                {"r": rater.id},
            )
            .scalars()
            .all()
        )
    assert foreign
    for item_id in [*foreign, 10_000]:
        with pytest.raises(NotAssignedError, match=f"item {item_id} is not assigned"):
            store.submit_rating(rater.id, item_id, 4)
    n_items = store.queue_length(rater.id)
    for position in (-1, n_items, "0"):
        with pytest.raises(NotAssignedError, match="outside this rater's"):
            store.rater_item(rater.id, position)
    ratings, _ = _snapshot(store)
    assert ratings == before[0]


def test_plan_assignments_balances_load():
    import random

    plan = plan_assignments(list(range(30)), [1, 2, 3, 4], 3, random.Random(0), every_rater_item_ids=[99])
    assert sorted(len(v) for v in plan.values()) == [
        23,
        23,
        24,
        24,
    ]  # 90 slots (22 or 23 each) + 1 check each
    for item in range(30):
        assert sum(item in v for v in plan.values()) == 3
    with pytest.raises(StudyError, match="overlap=5"):
        plan_assignments([1], [1, 2], 5, random.Random(0))


def test_new_database_is_owner_only_and_a_missing_one_is_refused(tmp_path):
    import stat

    from eval_human.__main__ import main

    store = StudyStore(tmp_path / "fresh.db")
    store.create_study("s")
    store.put_image(Image.new("RGB", (8, 8)))
    store.dispose()
    assert stat.S_IMODE((tmp_path / "fresh.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "fresh.db.media").stat().st_mode) == 0o700
    with pytest.raises(StudyError, match="no study database"):
        StudyStore(tmp_path / "typo.db", create=False)
    for command in (["export", "--study", "s", "--out", str(tmp_path / "x.csv")], ["stats", "--study", "s"]):
        assert main([command[0], "--db", str(tmp_path / "typo.db"), *command[1:]]) == 2
    assert not (tmp_path / "typo.db").exists()  # nothing was created by the mistyped path


def test_csv_export_neutralises_formulas_and_is_private(built_study, tmp_path):
    import stat

    import pandas as pd

    from eval_human.stats import export_ratings

    store, built = built_study
    rater = built.raters[0]
    item = store.rater_item(rater.id, 0)
    store.submit_rating(rater.id, item.item_id, 3, comment='=HYPERLINK("http://x","click")')
    path = export_ratings(store, built.study_id, tmp_path / "out" / "ratings.csv")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    comments = pd.read_csv(path)
    text = comments.loc[comments["question"] == "comment", "text"].tolist()
    assert text == ['\'=HYPERLINK("http://x","click")']
    parquet = export_ratings(store, built.study_id, tmp_path / "out" / "ratings.parquet")
    exact = pd.read_parquet(parquet)
    assert exact.loc[exact["question"] == "comment", "text"].tolist() == ['=HYPERLINK("http://x","click")']
