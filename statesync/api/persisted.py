"""Automatic persisted queries (Apollo's APQ): a client sends a query's SHA-256 alone, and
the query text only the first time, when the server says it does not know the hash.

    {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "<64 hex digits>"}}}

What is kept is bounded by bytes, oldest dropped first, per process: a process that does
not know a hash answers ``PERSISTED_QUERY_NOT_FOUND`` and the client sends the text again,
which is all the protocol asks of a server. A text is kept only under its own hash.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from statesync.errors import BadRequest, StatesyncError

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class PersistedQueryNotFound(StatesyncError):
    code = "PERSISTED_QUERY_NOT_FOUND"


class PersistedQueryNotSupported(StatesyncError):
    code = "PERSISTED_QUERY_NOT_SUPPORTED"


class PersistedQueries:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._texts: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0

    def query(self, query: Any, extensions: Any) -> tuple[Any, str | None]:
        """The query text to run (``query`` itself, or the one its persisted hash names), and
        the hash to :meth:`keep` it under once it prepared cleanly (None: nothing to keep)."""
        if extensions is not None and not isinstance(extensions, Mapping):
            raise BadRequest("extensions must be a JSON object")
        persisted = extensions.get("persistedQuery") if extensions is not None else None
        if persisted is None:
            return query, None
        if not isinstance(persisted, Mapping) or persisted.get("version") != 1:
            raise PersistedQueryNotSupported("only persistedQuery version 1 is supported")
        digest = persisted.get("sha256Hash")
        if not isinstance(digest, str) or not SHA256_HEX.match(digest):
            raise BadRequest("persistedQuery.sha256Hash must be 64 lowercase hex digits")
        if query is None:
            known = self._texts.get(digest)
            if known is None:
                # Apollo's links look for this message as well as the code.
                raise PersistedQueryNotFound("PersistedQueryNotFound")
            self._texts.move_to_end(digest)
            return known, None
        if not isinstance(query, str):
            return query, None  # the operation layer says what is wrong with it
        if hashlib.sha256(query.encode()).hexdigest() != digest:
            raise BadRequest("provided sha does not match query")
        return query, digest

    def keep(self, digest: str, query: str) -> None:
        if digest in self._texts or len(query) > self.max_bytes:
            return
        self._texts[digest] = query
        self._bytes += len(query)
        while self._bytes > self.max_bytes:
            _, dropped = self._texts.popitem(last=False)
            self._bytes -= len(dropped)
