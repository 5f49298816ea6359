"""A test-only model whose rules exercise every kind of permission: row filters on the
user and on a claim, hidden fields, presets, checks, update without delete."""

from __future__ import annotations

import statesync as ss


@ss.model(access=[
    # Authors see and write their own notes; the owner comes from their token.
    ss.allow("author", read={"owner": {"eq": ss.session.user_id}},
             create=["text", "secret", "published", "org"], update=["text", "secret", "published"],
             delete=True, presets={"owner": ss.session.user_id}),
    # Readers see published notes, never the secret.
    ss.allow("reader", read={"published": {"eq": True}}, fields=["owner", "text", "published"]),
    # Editors fix the text of published notes, and see no secret either.
    ss.allow("editor", read={"published": {"eq": True}}, fields=["owner", "text", "published"],
             update=["text"]),
    # A member sees their organisation's notes (a claim of their token).
    ss.allow("member", read={"org": {"eq": ss.session["x-hasura-org-id"]}}),
])
class Note:
    owner: str
    text: str
    secret: str | None = None
    published: bool = False
    org: str | None = None


@ss.model(conflicts="merge", access=[
    # Clerks may set a hidden field they cannot read back (a drop box).
    ss.allow("clerk", read=True, fields=["title"], update=["title", "hidden"]),
])
class Card:
    title: str
    hidden: str | None = None
