"""The JSON log format: one object a line, with the request id of the context."""

from __future__ import annotations

import logging

import orjson

from statesync.logs import REQUEST_ID, JsonFormatter, RequestIdFilter


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("statesync.test", logging.WARNING, __file__, 1, message, None, None)
    for name, value in extra.items():
        setattr(made, name, value)
    return made


def test_a_line_is_one_object_with_what_it_is_about() -> None:
    token = REQUEST_ID.set("req-7")
    try:
        line = record("committed", model="Order", document_id="o1")
        assert RequestIdFilter().filter(line)
    finally:
        REQUEST_ID.reset(token)
    out = orjson.loads(JsonFormatter().format(line))
    assert {k: out[k] for k in ("level", "logger", "message", "request_id", "model",
                                "document_id")} == {
        "level": "WARNING", "logger": "statesync.test", "message": "committed",
        "request_id": "req-7", "model": "Order", "document_id": "o1"}
    assert "event_id" not in out  # only what applies


def test_outside_a_request_there_is_no_id() -> None:
    line = record("sweep")
    RequestIdFilter().filter(line)
    assert "request_id" not in orjson.loads(JsonFormatter().format(line))
