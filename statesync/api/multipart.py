"""Subscriptions over multipart HTTP, Apollo's protocol (what Apollo Client's HttpLink
speaks with no extra package): a request whose ``Accept`` lists
``multipart/mixed;subscriptionSpec=1.0`` gets a ``multipart/mixed; boundary="graphql"``
response, one JSON part per result as ``{"payload": <result>}``, a ``{}`` part every
:data:`HEARTBEAT` seconds, and ``{"payload": null, "errors": [...]}`` for an error that
ends the subscription (an expired token, a refusal at its source), as the protocol puts
transport errors. An operation refused before it runs is a plain JSON answer, which the
client's ``Accept`` lists too. The stream is run by :mod:`statesync.api.http_streams`.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from graphql import ExecutionResult

from statesync.api.http_streams import response_body

BOUNDARY = "graphql"
HEARTBEAT = 5.0  # seconds, as Apollo's router sends them
_PART_HEADERS = b"\r\ncontent-type: application/json; charset=utf-8\r\n\r\n"


def wants_multipart_subscription(accept: str) -> bool:
    """``multipart/mixed`` with ``subscriptionSpec`` 1.0 and our boundary (or none)."""
    for part in accept.split(","):
        media, *raw_params = (piece.strip() for piece in part.split(";"))
        if media.lower() != "multipart/mixed":
            continue
        params = {}
        for raw in raw_params:
            name, _, value = raw.partition("=")
            params[name.strip().lower()] = value.strip().strip("'\"")
        if params.get("subscriptionspec", "").startswith("1.0") \
                and params.get("boundary", BOUNDARY) == BOUNDARY:
            return True
    return False


def _part(body: object) -> bytes:
    return _PART_HEADERS + orjson.dumps(body) + f"\r\n--{BOUNDARY}".encode()


@dataclass(frozen=True)
class MultipartSubscription:
    keep_alive: float = HEARTBEAT
    content_type: str = f'multipart/mixed; boundary="{BOUNDARY}"; subscriptionSpec="1.0"'

    def opening(self) -> bytes:
        # Sent at once: the client sees the response start before the first result.
        return f"--{BOUNDARY}".encode() + _part({})

    def result(self, result: ExecutionResult) -> bytes:
        return _part({"payload": response_body(result)})

    def fatal(self, result: ExecutionResult) -> bytes:
        return _part({"payload": None, "errors": response_body(result).get("errors", [])})

    def keep_alive_bytes(self) -> bytes:
        return _part({})

    def closing(self) -> bytes:
        return b"--\r\n"  # after the last part's boundary: "--graphql--"
