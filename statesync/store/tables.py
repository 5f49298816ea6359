"""statesync's own tables. Migrations in ``migrations/`` create exactly these.

Users' models need no migration: every model's documents live in ``documents``
as JSONB, keyed by ``(model, id)``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData()

documents = sa.Table(
    "statesync_documents",
    metadata,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("data", pg.JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    # A deleted document stays as a tombstone so a re-create continues its version
    # sequence: per document, subscribers always see versions increase by one.
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    # Which documents refer to an id (statesync.relations.containment): `data @> pattern`.
    sa.Index("statesync_documents_contents", "data", postgresql_using="gin",
             postgresql_ops={"data": "jsonb_path_ops"}),
)

# The change feed. ``seq`` is assigned at insert, so it is NOT commit order;
# ``cursor`` is assigned after commit by the single active sequencer, in the
# order it sees rows committed, dense (no gaps) so readers can detect a miss.
changes = sa.Table(
    "statesync_changes",
    metadata,
    sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("cursor", sa.BigInteger, nullable=True, unique=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("doc_id", sa.Text, nullable=False),
    sa.Column("op", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("document", pg.JSONB, nullable=True),
    sa.Column("previous", pg.JSONB, nullable=True),
    sa.Column("changed_fields", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("mutation_id", sa.Text, nullable=True),
    sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
    # The event whose handler committed this change (null for clients and services).
    sa.Column("caused_by", pg.UUID(as_uuid=False), nullable=True),
    # How an update based on an older version was merged (statesync.conflicts.Resolution).
    sa.Column("resolution", pg.JSONB, nullable=True),
    sa.Index("statesync_changes_unsequenced", "seq", postgresql_where=sa.text("cursor IS NULL")),
    sa.Index("statesync_changes_by_document", "model", "doc_id", "cursor"),
    # A merge's base (statements.read_version): one probe, however long the document's history.
    sa.Index("statesync_changes_by_version", "model", "doc_id", "version"),
)

feed_head = sa.Table(
    "statesync_feed_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("cursor", sa.BigInteger, nullable=False),
    sa.CheckConstraint("id = 1", name="statesync_feed_head_single_row"),
)

outbox = sa.Table(
    "statesync_outbox",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=False), primary_key=True),
    # Insertion order; per document it is version order (see statements.sequence_batch).
    sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=True),
    sa.Column("doc_id", sa.Text, nullable=True),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("change_seq", sa.BigInteger, nullable=True),
    sa.Column("payload", pg.JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # When the relay turned this event into one delivery per matching handler.
    sa.Column("relayed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("key", sa.Text, nullable=True),  # a custom event's key (document id for changes)
    sa.Column("caused_by", pg.UUID(as_uuid=False), nullable=True),
    sa.Column("request_id", sa.Text, nullable=True),  # of the commit that wrote it, inherited
    sa.Index("statesync_outbox_pending", "created_at", postgresql_where=sa.text("relayed_at IS NULL")),
)

# One row per event x handler: the event's lifecycle for that handler.
deliveries = sa.Table(
    "statesync_deliveries",
    metadata,
    sa.Column("event_id", pg.UUID(as_uuid=False), sa.ForeignKey("statesync_outbox.id"),
              primary_key=True),
    sa.Column("handler", sa.Text, primary_key=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    # Ordered handlers: one unfinished delivery per key runs at a time, lowest event_seq first.
    sa.Column("ordering_key", sa.Text, nullable=True),
    sa.Column("event_seq", sa.BigInteger, nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint(
        "status IN ('pending', 'waiting', 'dispatched', 'running', 'succeeded', 'retrying', "
        "'dead')",
        name="statesync_deliveries_status",
    ),
    sa.Index("statesync_deliveries_due", "next_attempt_at",
             postgresql_where=sa.text("status IN ('pending', 'retrying')")),
    sa.Index("statesync_deliveries_leased", "lease_expires_at",
             postgresql_where=sa.text("status IN ('dispatched', 'running')")),
    sa.Index("statesync_deliveries_ordering", "ordering_key", "event_seq",
             postgresql_where=sa.text("status NOT IN ('succeeded', 'dead')")),
    sa.Index("statesync_deliveries_by_status", "status", "updated_at"),
)

mutations = sa.Table(
    "statesync_mutations",
    metadata,
    sa.Column("mutation_id", sa.Text, primary_key=True),
    sa.Column("request_hash", sa.Text, nullable=False),
    sa.Column("result", pg.JSONB, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Every attempt of every delivery, for operators and for proving the backoff.
attempts = sa.Table(
    "statesync_attempts",
    metadata,
    sa.Column("event_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("handler", sa.Text, primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("outcome", sa.Text, nullable=True),  # succeeded | retrying | dead | superseded
    sa.Column("error", sa.Text, nullable=True),
    sa.ForeignKeyConstraint(["event_id", "handler"],
                            ["statesync_deliveries.event_id", "statesync_deliveries.handler"]),
)
