"""A bare Celery app for bench/eventing.py's raw figures, configured as statesync's is
(late acknowledgement, prefetch 1, JSON, no results): tasks that only say they ran.

    RAW_BROKER_URL=redis://... RAW_QUEUE=raw celery -A raw_celery worker -c 2
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

app = Celery("raw", broker=os.environ["RAW_BROKER_URL"], set_as_current=False)
app.conf.update(
    task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
    task_serializer="json", accept_content=["json"], task_ignore_result=True,
    task_default_queue=os.environ["RAW_QUEUE"], worker_hijack_root_logger=False,
)
_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client
    if _client is None:  # per worker process, after the fork
        _client = redis.Redis.from_url(os.environ["RAW_BROKER_URL"])
    return _client


@app.task(name="raw.count")  # type: ignore[untyped-decorator]
def count(key: str) -> None:
    """Counts itself, with the times of the first and the last run (one pipeline)."""
    now = time.time()
    pipe = client().pipeline()
    pipe.set(f"{key}:first", now, nx=True)
    pipe.set(f"{key}:last", now)
    pipe.incr(key)
    pipe.execute()


@app.task(name="raw.echo")  # type: ignore[untyped-decorator]
def echo(channel: str) -> None:
    """Publishes on ``channel``: the bare task's end of a round trip back to a subscriber."""
    client().publish(channel, b"")
