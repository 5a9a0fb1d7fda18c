"""Initial human-study schema: studies, items, raters, assignments, ratings.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-23 19:24:26.325221
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("likert_max", sa.Integer(), nullable=False),
        sa.Column("overlap", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("attention_max_score", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("likert_max >= 2 AND likert_max <= 10", name=op.f("ck_studies_likert_range")),
        sa.CheckConstraint("overlap >= 1", name=op.f("ck_studies_overlap_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
        sa.UniqueConstraint("name", name=op.f("uq_studies_name")),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("domain", sa.String(length=50), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("source_label", sa.String(length=200), nullable=False),
        sa.Column("source", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('generated', 'real', 'attention_check')", name=op.f("ck_items_kind_known")
        ),
        sa.CheckConstraint("length(image_sha256) = 64", name=op.f("ck_items_sha256_length")),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_items_study_id_studies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_items")),
    )
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_items_external_id"), ["external_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_items_source_label"), ["source_label"], unique=False)
        batch_op.create_index(batch_op.f("ix_items_study_id"), ["study_id"], unique=False)

    op.create_table(
        "raters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('rater', 'admin')", name=op.f("ck_raters_role_known")),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_raters_study_id_studies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raters")),
        sa.UniqueConstraint("study_id", "name", name=op.f("uq_raters_study_id_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_raters_token_hash")),
    )
    with op.batch_alter_table("raters", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_raters_study_id"), ["study_id"], unique=False)

    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'submitted', 'discarded')", name=op.f("ck_assignments_status_known")
        ),
        sa.CheckConstraint("position >= 0", name=op.f("ck_assignments_position_nonnegative")),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_assignments_item_id_items"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["rater_id"], ["raters.id"], name=op.f("fk_assignments_rater_id_raters"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignments")),
        sa.UniqueConstraint("rater_id", "item_id", name=op.f("uq_assignments_rater_id_item_id")),
        sa.UniqueConstraint("rater_id", "position", name=op.f("uq_assignments_rater_id_position")),
    )
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_assignments_item_id"), ["item_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_assignments_rater_id"), ["rater_id"], unique=False)

    op.create_table(
        "ratings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("question", sa.String(length=50), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("cannot_judge", sa.Boolean(), nullable=False),
        sa.Column("seconds_spent", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "question IN ('consistency', 'image_realism', 'report_plausibility', 'comment')",
            name=op.f("ck_ratings_question_known"),
        ),
        sa.CheckConstraint("score IS NULL OR score >= 1", name=op.f("ck_ratings_score_positive")),
        sa.CheckConstraint(
            "seconds_spent IS NULL OR seconds_spent >= 0", name=op.f("ck_ratings_seconds_nonnegative")
        ),
        sa.ForeignKeyConstraint(
            ["rater_id", "item_id"],
            ["assignments.rater_id", "assignments.item_id"],
            name=op.f("fk_ratings_rater_id_item_id_assignments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ratings")),
        sa.UniqueConstraint(
            "rater_id", "item_id", "question", name=op.f("uq_ratings_rater_id_item_id_question")
        ),
    )
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ratings_item_id"), ["item_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ratings_rater_id"), ["rater_id"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ratings_rater_id"))
        batch_op.drop_index(batch_op.f("ix_ratings_item_id"))

    op.drop_table("ratings")
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assignments_rater_id"))
        batch_op.drop_index(batch_op.f("ix_assignments_item_id"))

    op.drop_table("assignments")
    with op.batch_alter_table("raters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_raters_study_id"))

    op.drop_table("raters")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_items_study_id"))
        batch_op.drop_index(batch_op.f("ix_items_source_label"))
        batch_op.drop_index(batch_op.f("ix_items_external_id"))

    op.drop_table("items")
    op.drop_table("studies")
