"""A committed change as the feed carries it: the value, its wire form, its row form."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from statesync.conflicts import Resolution

META_DATETIMES = ("created_at", "updated_at", "expires_at")


def document_from_json(doc: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """JSON keeps datetimes as strings; the meta fields are datetimes in memory."""
    if doc is None:
        return None
    out = dict(doc)
    for key in META_DATETIMES:
        value = out.get(key)
        if isinstance(value, str):
            out[key] = datetime.fromisoformat(value)
    return out


@dataclass(frozen=True, slots=True)
class Change:
    cursor: int
    seq: int
    model: str
    doc_id: str
    op: str
    version: int
    document: dict[str, Any] | None
    previous: dict[str, Any] | None
    changed_fields: tuple[str, ...]
    mutation_id: str | None
    committed_at: datetime
    resolution: Resolution | None = None  # an update based on an older version, merged
    # Set on a change made up for a subscription that selects through a reference: the
    # (model, id) whose change this is, and ``document`` is the referring one, unchanged.
    via: tuple[str, str] | None = None

    def through(self, model: str, document: dict[str, Any], fields: tuple[str, ...]) -> Change:
        """This change of a referenced document as a subscriber of ``document``, which refers
        to it in ``fields``, sees it: its document is unchanged, but what it shows is not.
        Such a change stays in this process (never on the wire, never in the changelog)."""
        return Change(cursor=self.cursor, seq=self.seq, model=model, doc_id=document["id"],
                      op="UPDATED", version=document["version"], document=document,
                      previous={}, changed_fields=fields, mutation_id=None,
                      committed_at=self.committed_at, via=(self.model, self.doc_id))

    @classmethod
    def from_row(cls, row: Any) -> Change:
        """From a changelog row: a SQLAlchemy row, or an asyncpg record (keys only)."""
        r = row._mapping if hasattr(row, "_mapping") else row
        return cls(
            cursor=r["cursor"], seq=r["seq"], model=r["model"], doc_id=r["doc_id"], op=r["op"],
            version=r["version"], document=document_from_json(r["document"]),
            previous=document_from_json(r["previous"]),
            changed_fields=tuple(r["changed_fields"]), mutation_id=r["mutation_id"],
            committed_at=r["committed_at"], resolution=Resolution.from_json(r["resolution"]),
        )

    def before(self) -> dict[str, Any] | None:
        """The document as it was before this change (None if it did not exist)."""
        if self.op == "CREATED":
            return None
        if self.document is None:  # deleted or expired: previous is the whole old document
            return self.previous
        return {**self.document, **(self.previous or {}), "version": self.version - 1}

    def to_wire(self) -> dict[str, Any]:
        return {
            "c": self.cursor, "s": self.seq, "m": self.model, "i": self.doc_id, "o": self.op,
            "v": self.version, "d": self.document, "p": self.previous,
            "f": self.changed_fields, "u": self.mutation_id, "t": self.committed_at,
            "r": None if self.resolution is None else self.resolution.to_json(),
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Change:
        return cls(
            cursor=w["c"], seq=w["s"], model=w["m"], doc_id=w["i"], op=w["o"], version=w["v"],
            document=document_from_json(w["d"]), previous=document_from_json(w["p"]),
            changed_fields=tuple(w["f"]), mutation_id=w["u"],
            committed_at=datetime.fromisoformat(w["t"]), resolution=Resolution.from_json(w.get("r")),
        )


@dataclass(frozen=True, slots=True)
class ChangeEventPayload:
    """The ``payload`` of a change's outbox event (what a handler's ``Event`` is read from),
    named here once for the statement that writes it and the worker that reads it."""

    document: dict[str, Any] | None
    previous: dict[str, Any] | None
    changed_fields: tuple[str, ...]
    mutation_id: str | None
    resolution: Resolution | None = None

    def to_json(self) -> dict[str, Any]:
        body = {"document": self.document, "previous": self.previous,
                "changedFields": list(self.changed_fields), "mutationId": self.mutation_id}
        if self.resolution is not None:
            body["resolution"] = self.resolution.to_json()
        return body

    @classmethod
    def read(cls, payload: Mapping[str, Any]) -> ChangeEventPayload:
        return cls(document=document_from_json(payload.get("document")),
                   previous=document_from_json(payload.get("previous")),
                   changed_fields=tuple(payload.get("changedFields", ())),
                   mutation_id=payload.get("mutationId"),
                   resolution=Resolution.from_json(payload.get("resolution")))


def encode_batch(changes: Sequence[Change]) -> bytes:
    return orjson.dumps([c.to_wire() for c in changes])


def decode_batch(payload: bytes | str) -> list[Change]:
    return [Change.from_wire(w) for w in orjson.loads(payload)]
