"""core tables: documents, change feed, feed head, outbox, mutation ids

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "statesync_changes",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=True),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("doc_id", sa.Text(), nullable=False),
        sa.Column("op", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("previous", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("changed_fields", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("mutation_id", sa.Text(), nullable=True),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("cursor"),
    )
    op.create_index(
        "statesync_changes_by_document", "statesync_changes", ["model", "doc_id", "cursor"], unique=False
    )
    op.create_index(
        "statesync_changes_unsequenced",
        "statesync_changes",
        ["seq"],
        unique=False,
        postgresql_where=sa.text("cursor IS NULL"),
    )
    op.create_table(
        "statesync_documents",
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("model", "id"),
    )
    op.create_table(
        "statesync_feed_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name="statesync_feed_head_single_row"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "statesync_mutations",
        sa.Column("mutation_id", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("mutation_id"),
    )
    op.create_table(
        "statesync_outbox",
        sa.Column("id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("doc_id", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("change_seq", sa.BigInteger(), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "statesync_outbox_pending",
        "statesync_outbox",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("dispatched_at IS NULL"),
    )
    op.execute("INSERT INTO statesync_feed_head (id, cursor) VALUES (1, 0)")


def downgrade() -> None:
    op.drop_index(
        "statesync_outbox_pending",
        table_name="statesync_outbox",
        postgresql_where=sa.text("dispatched_at IS NULL"),
    )
    op.drop_table("statesync_outbox")
    op.drop_table("statesync_mutations")
    op.drop_table("statesync_feed_head")
    op.drop_table("statesync_documents")
    op.drop_index(
        "statesync_changes_unsequenced",
        table_name="statesync_changes",
        postgresql_where=sa.text("cursor IS NULL"),
    )
    op.drop_index("statesync_changes_by_document", table_name="statesync_changes")
    op.drop_table("statesync_changes")
