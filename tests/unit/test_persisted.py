"""The persisted-query store keeps texts under their own hash, within its bytes."""

from __future__ import annotations

import hashlib

import pytest

from statesync.api.persisted import PersistedQueries, PersistedQueryNotFound


def ext(text: str) -> dict[str, object]:
    return {"persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(text.encode()).hexdigest()}}


def test_the_oldest_texts_go_first_when_over_the_bound() -> None:
    store = PersistedQueries(max_bytes=25)
    texts = ["{ a0123456789 }", "{ b0123456789 }"]  # 15 bytes each: one fits
    for text in texts:
        query, digest = store.query(text, ext(text))
        assert digest is not None
        store.keep(digest, query)
    assert store.query(None, ext(texts[1])) == (texts[1], None)
    with pytest.raises(PersistedQueryNotFound):
        store.query(None, ext(texts[0]))


def test_without_the_extension_the_query_is_left_alone() -> None:
    assert PersistedQueries(100).query("{ x }", {}) == ("{ x }", None)
    assert PersistedQueries(100).query("{ x }", None) == ("{ x }", None)
