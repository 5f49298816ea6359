"""a change says how an update based on an older version was merged

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Models may now merge conflicting updates (``conflicts="merge"`` or a resolver) instead of
rejecting them; the change a merged update makes records which fields took the client's
value and which kept the server's, for its subscribers and its event's handlers; the
base version of such a merge is found through an index by version.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("statesync_changes", sa.Column("resolution", pg.JSONB, nullable=True))
    # The base of a merge is read by version: without this, a client sending an old
    # expectedVersion to a long-lived document made every such commit scan its history.
    op.create_index("statesync_changes_by_version", "statesync_changes",
                    ["model", "doc_id", "version"])


def downgrade() -> None:
    op.drop_index("statesync_changes_by_version", table_name="statesync_changes")
    op.drop_column("statesync_changes", "resolution")
