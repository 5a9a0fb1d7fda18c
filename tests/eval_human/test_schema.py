"""Schema and migrations: Alembic head equals the ORM metadata, pragmas on every connection, DB-level guards."""

from __future__ import annotations

import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from eval_human.models import Base
from eval_human.store import StudyStore


def test_migration_head_matches_metadata(tmp_path):
    store = StudyStore(tmp_path / "m.db")
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn)
        assert compare_metadata(context, Base.metadata) == []
        head = ScriptDirectory.from_config(store.alembic_config()).get_current_head()
        assert context.get_current_revision() == head
    assert set(inspect(store.engine).get_table_names()) >= {
        "studies",
        "items",
        "raters",
        "assignments",
        "ratings",
    }
    store.dispose()


def test_upgrade_is_idempotent_and_keeps_data(tmp_path):
    store = StudyStore(tmp_path / "m.db")
    study_id = store.create_study("keep")
    store.dispose()
    reopened = StudyStore(tmp_path / "m.db")  # runs upgrade("head") again
    reopened.upgrade()
    assert reopened.study_info(study_id)["name"] == "keep"
    reopened.dispose()


def test_every_connection_gets_the_pragmas(tmp_path):
    store = StudyStore(tmp_path / "p.db")
    connections = [store.engine.connect() for _ in range(3)]  # distinct pooled DB-API connections
    try:
        for conn in connections:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000
    finally:
        for conn in connections:
            conn.close()
        store.dispose()


def test_database_refuses_rating_outside_assignment_and_duplicates(built_study):
    store, built = built_study
    rater = built.raters[0]
    with store.engine.connect() as conn:
        assigned = (
            conn.execute(text("SELECT item_id FROM assignments WHERE rater_id = :r"), {"r": rater.id})
            .scalars()
            .all()
        )
        foreign = (
            conn.execute(
                text(
                    "SELECT id FROM items WHERE id NOT IN (SELECT item_id FROM assignments WHERE rater_id = :r)"
                ),
                {"r": rater.id},
            )
            .scalars()
            .first()
        )
    insert = text(
        "INSERT INTO ratings (rater_id, item_id, question, score, cannot_judge, created_at, updated_at) "
        "VALUES (:r, :i, 'consistency', 3, 0, '2020-01-01', '2020-01-01')"
    )
    with pytest.raises(IntegrityError):  # composite foreign key to the rater's assignment
        with store.engine.begin() as conn:
            conn.execute(insert, {"r": rater.id, "i": foreign})
    with store.engine.begin() as conn:
        conn.execute(insert, {"r": rater.id, "i": assigned[0]})
    with pytest.raises(IntegrityError):  # unique (rater, item, question)
        with store.engine.begin() as conn:
            conn.execute(insert, {"r": rater.id, "i": assigned[0]})


def test_tokens_are_stored_hashed(built_study):
    store, built = built_study
    raw = sqlite3.connect(store.engine.url.database)
    try:
        stored = {row[0] for row in raw.execute("SELECT token_hash FROM raters")}
    finally:
        raw.close()
    assert len(stored) == len(built.raters)
    for rater in built.raters:
        assert rater.token not in stored
        assert all(rater.token not in value for value in stored)
