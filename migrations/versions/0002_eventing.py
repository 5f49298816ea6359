"""eventing: deliveries, outbox order and keys, change causes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "statesync_deliveries",
        sa.Column("event_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("handler", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("ordering_key", sa.Text(), nullable=True),
        sa.Column("event_seq", sa.BigInteger(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'dispatched', 'running', 'succeeded', 'retrying', 'dead')",
            name="statesync_deliveries_status",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["statesync_outbox.id"],
        ),
        sa.PrimaryKeyConstraint("event_id", "handler"),
    )
    op.create_index(
        "statesync_deliveries_by_status", "statesync_deliveries", ["status", "updated_at"], unique=False
    )
    op.create_index(
        "statesync_deliveries_due",
        "statesync_deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'retrying')"),
    )
    op.create_index(
        "statesync_deliveries_leased",
        "statesync_deliveries",
        ["lease_expires_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('dispatched', 'running')"),
    )
    op.create_index(
        "statesync_deliveries_ordering",
        "statesync_deliveries",
        ["ordering_key", "event_seq"],
        unique=False,
        postgresql_where=sa.text("status NOT IN ('succeeded', 'dead')"),
    )
    op.create_table(
        "statesync_attempts",
        sa.Column("event_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("handler", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id", "handler"],
            ["statesync_deliveries.event_id", "statesync_deliveries.handler"],
        ),
        sa.PrimaryKeyConstraint("event_id", "handler", "attempt"),
    )
    op.add_column("statesync_changes", sa.Column("caused_by", sa.UUID(as_uuid=False), nullable=True))
    op.add_column(
        "statesync_outbox", sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False)
    )
    op.add_column("statesync_outbox", sa.Column("key", sa.Text(), nullable=True))
    op.add_column("statesync_outbox", sa.Column("caused_by", sa.UUID(as_uuid=False), nullable=True))
    op.create_unique_constraint("statesync_outbox_seq_key", "statesync_outbox", ["seq"])


def downgrade() -> None:
    # https://alembic.sqlalchemy.org/en/latest/naming.html
    op.drop_constraint("statesync_outbox_seq_key", "statesync_outbox", type_="unique")
    op.drop_column("statesync_outbox", "caused_by")
    op.drop_column("statesync_outbox", "key")
    op.drop_column("statesync_outbox", "seq")
    op.drop_column("statesync_changes", "caused_by")
    op.drop_index(
        "statesync_deliveries_ordering",
        table_name="statesync_deliveries",
        postgresql_where=sa.text("status NOT IN ('succeeded', 'dead')"),
    )
    op.drop_index(
        "statesync_deliveries_leased",
        table_name="statesync_deliveries",
        postgresql_where=sa.text("status IN ('dispatched', 'running')"),
    )
    op.drop_index(
        "statesync_deliveries_due",
        table_name="statesync_deliveries",
        postgresql_where=sa.text("status IN ('pending', 'retrying')"),
    )
    op.drop_index("statesync_deliveries_by_status", table_name="statesync_deliveries")
    op.drop_table("statesync_attempts")
    op.drop_table("statesync_deliveries")
