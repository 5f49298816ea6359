"""an event remembers the request that caused it

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

The request id (``X-Request-Id``, or the one the edge made up) of the commit or emit that
wrote an event, inherited by what its handlers write, so that one change can be followed
through the API's, the relay's and the worker's log lines.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("statesync_outbox", sa.Column("request_id", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("statesync_outbox", "request_id")
