"""ordered deliveries wait behind their key's head; the outbox's relayed_at

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

An ordered handler's delivery that has an unfinished earlier one of its key is now
``waiting`` (not due, not in the due index) until that one finishes, so the relay's due
query is an index range scan instead of a probe per blocked row. The outbox's
``dispatched_at`` (set when the relay fanned an event out, not when a delivery was sent)
becomes ``relayed_at``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('pending', 'dispatched', 'running', 'succeeded', 'retrying', 'dead')"
NEW_STATUSES = ("status IN ('pending', 'waiting', 'dispatched', 'running', 'succeeded', "
                "'retrying', 'dead')")


def upgrade() -> None:
    op.drop_constraint("statesync_deliveries_status", "statesync_deliveries", type_="check")
    op.create_check_constraint("statesync_deliveries_status", "statesync_deliveries", NEW_STATUSES)
    # What the old due query skipped at every poll, it now leaves alone for good.
    op.execute("""
        UPDATE statesync_deliveries d SET status = 'waiting'
        WHERE d.ordering_key IS NOT NULL AND d.status = 'pending' AND EXISTS (
            SELECT 1 FROM statesync_deliveries e
            WHERE e.ordering_key = d.ordering_key AND e.event_seq < d.event_seq
              AND e.status NOT IN ('succeeded', 'dead'))""")
    op.alter_column("statesync_outbox", "dispatched_at", new_column_name="relayed_at")
    op.drop_index("statesync_outbox_pending", table_name="statesync_outbox",
                  postgresql_where=sa.text("dispatched_at IS NULL"))
    op.create_index("statesync_outbox_pending", "statesync_outbox", ["created_at"], unique=False,
                    postgresql_where=sa.text("relayed_at IS NULL"))


def downgrade() -> None:
    op.drop_index("statesync_outbox_pending", table_name="statesync_outbox",
                  postgresql_where=sa.text("relayed_at IS NULL"))
    op.alter_column("statesync_outbox", "relayed_at", new_column_name="dispatched_at")
    op.create_index("statesync_outbox_pending", "statesync_outbox", ["created_at"], unique=False,
                    postgresql_where=sa.text("dispatched_at IS NULL"))
    op.execute("UPDATE statesync_deliveries SET status = 'pending' WHERE status = 'waiting'")
    op.drop_constraint("statesync_deliveries_status", "statesync_deliveries", type_="check")
    op.create_check_constraint("statesync_deliveries_status", "statesync_deliveries", OLD_STATUSES)
