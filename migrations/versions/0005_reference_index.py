"""documents are found by what they contain: the documents that refer to one

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Models may refer to each other (``statesync.ref``). Deleting a referenced document (its
``on_delete`` rule) and keeping a subscription live through a reference both ask which
documents refer to an id, as a JSONB containment test; this index answers it without
reading every document of the model.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("statesync_documents_contents", "statesync_documents", ["data"],
                    postgresql_using="gin", postgresql_ops={"data": "jsonb_path_ops"})


def downgrade() -> None:
    op.drop_index("statesync_documents_contents", table_name="statesync_documents")
