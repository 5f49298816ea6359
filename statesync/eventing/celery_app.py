"""The Celery app of statesync's workers, built from the ``STATESYNC_*`` settings.

:func:`create_celery` builds it; nothing here builds one at import. The command line's
``celery -A statesync.celery_app worker`` imports the entry module that does. Engines and
clients are built lazily in each worker process (after the fork), never at import time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import redis
import sqlalchemy as sa
from celery import Celery
from celery.signals import setup_logging, worker_init, worker_process_shutdown
from prometheus_client import multiprocess

from statesync import logs
from statesync.config import Settings
from statesync.eventing import metrics
from statesync.eventing.broker import CeleryBroker, Pair
from statesync.eventing.handlers import Handlers, load_handlers
from statesync.eventing.lifecycle import Status
from statesync.eventing.retention import prune
from statesync.eventing.sweep import sweep_expired
from statesync.eventing.tasks import DELIVER, DELIVER_MANY, PRUNE, SWEEP
from statesync.eventing.worker import DeliveryWorker, Notice
from statesync.feed.channels import Channels
from statesync.loader import load_models
from statesync.store.commits import model_table
from statesync.store.engines import sync_engine

log = logging.getLogger(__name__)

BROKER_SOCKET_TIMEOUT = 5.0
ANNOUNCE_TIMEOUT = 1.0  # seconds, beside a renewal every third of handler_timeout
FAILED = (Status.RETRYING, Status.DEAD)


def create_celery(settings: Settings) -> Celery:
    app = Celery("statesync", broker=settings.broker_url or settings.redis_url, set_as_current=False)
    app.conf.update(
        # At least once: a task is acknowledged only after it ran, and a task whose worker
        # died is given back. Idempotence comes from the delivery row (statesync.eventing.worker).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=settings.queue,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a broker outage is waited out, never fatal
        broker_transport_options=_transport_options(settings),
        **_transport(settings),
        worker_hijack_root_logger=False,
        beat_schedule={
            "sweep-expired": {"task": SWEEP, "schedule": timedelta(seconds=settings.sweep_interval)},
            "prune": {"task": PRUNE, "schedule": timedelta(seconds=settings.prune_interval)},
        },
    )
    app.conf.statesync_settings = settings

    def one_log_format(**_: Any) -> None:
        # Connected, this replaces Celery's own logging setup in its worker and beat.
        logs.configure(settings)

    setup_logging.connect(one_log_format, weak=False)
    if settings.metrics_port is not None:
        _serve_metrics(settings.metrics_port, settings.host)

    @app.task(name=DELIVER)  # type: ignore[untyped-decorator]
    def deliver(event_id: str, handler: str) -> str:
        status = _worker(settings, app).deliver(event_id, handler)
        if status in FAILED:
            # Celery's own tools (Flower, events, its log) then show the failure. It is
            # acknowledged like any task: what follows is statesync's (the delivery row).
            raise HandlerFailed(f"handler {handler} failed on event {event_id}; the delivery "
                                f"is {status} (its lastError says why)")
        return status

    @app.task(name=DELIVER_MANY)  # type: ignore[untyped-decorator]
    def deliver_many(pairs: list[list[str]]) -> list[str]:
        statuses = _worker(settings, app).deliver_all(bundle_of(pairs))
        failed = [f"{handler} on {event_id} ({status})" for (event_id, handler), status
                  in zip(pairs, statuses, strict=True) if status in (*FAILED, "not run")]
        # ("handed back": sent again as tasks of their own, whose state tells their end)
        if failed:  # the task fails if any of its deliveries did; each row says how
            raise HandlerFailed(f"{len(failed)} of {len(pairs)} deliveries failed: "
                                + ", ".join(failed))
        return statuses

    @app.task(name=SWEEP)  # type: ignore[untyped-decorator]
    def sweep() -> int:
        worker = _worker(settings, app)
        expired = sweep_expired(worker.engine, worker.models, settings.max_document_bytes)
        if expired:
            worker.notify(Notice(committed=True))
        return expired

    @app.task(name=PRUNE)  # type: ignore[untyped-decorator]
    def prune_old() -> dict[str, int]:
        return asdict(prune(_worker(settings, app).engine, timedelta(seconds=settings.retention)))

    return app


def _serve_metrics(port: int, host: str) -> None:
    """The worker's main process serves its pool's figures (statesync.eventing.metrics)."""

    def serve(**_: Any) -> None:
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            log.warning("STATESYNC_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR set before the "
                        "worker starts (`statesync worker` sets one): no metrics served")
            return
        metrics.serve(port, host)

    def forget(pid: int | None = None, **_: Any) -> None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # a pool process's live gauges go
            multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]

    worker_init.connect(serve, weak=False)
    worker_process_shutdown.connect(forget, weak=False)


def _transport(settings: Settings) -> dict[str, Any]:
    """Redis through statesync.eventing.redis_transport (a worker that survives the broker
    going away); any other broker (rediss:// included, whose TLS kombu picks by scheme)
    through its own kombu transport."""
    if (settings.broker_url or settings.redis_url or "").startswith("redis://"):
        return {"broker_transport": "statesync.eventing.redis_transport:Transport"}
    return {}


def _transport_options(settings: Settings) -> dict[str, Any]:
    # Redis redelivers unacknowledged tasks after the visibility timeout; the relay's
    # dispatch timeout and lease act sooner. Socket timeouts: a Redis that stops answering
    # (rather than refusing) fails a send in seconds instead of hanging it.
    options: dict[str, Any] = {
        "visibility_timeout": int(max(settings.handler_timeout, settings.dispatch_timeout) * 2) + 60}
    if (settings.broker_url or settings.redis_url or "").startswith(("redis://", "rediss://")):
        options |= {"socket_timeout": BROKER_SOCKET_TIMEOUT,
                    "socket_connect_timeout": BROKER_SOCKET_TIMEOUT}
    return options


def bundle_of(message: Any) -> list[Pair]:
    """A bundle task's deliveries, ``[[event_id, handler], ...]``. Only relays and workers
    send these; anything else is refused whole, before any claim."""
    if not isinstance(message, list) or not all(
            isinstance(pair, list | tuple) and len(pair) == 2
            and all(isinstance(part, str) for part in pair) for pair in message):
        raise ValueError(f"not a bundle of deliveries: {str(message)[:200]}")
    return [(event_id, handler) for event_id, handler in message]


def _planning_generically(engine: sa.Engine) -> sa.Engine:
    """The attempt's statements name their deliveries as arrays (one statement for a
    bundle's successes). PostgreSQL's generic plan for them guesses ten rows, which makes it
    dearer on paper than a plan for one, so it would plan every execution again (most of a
    statement's time); the generic plan is the same index lookups, planned once per
    connection. Set on connecting, not as a connection option, which would replace any
    ``options`` the database URL or PGOPTIONS carry."""
    @sa.event.listens_for(engine, "connect")
    def generic_plans(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.execute("SET plan_cache_mode = force_generic_plan")
        dbapi_connection.commit()

    return engine


class HandlerFailed(Exception):
    """A delivery task whose handler failed: the task's state in Celery is FAILURE."""


_workers: dict[int, DeliveryWorker] = {}


def _worker(settings: Settings, celery: Celery) -> DeliveryWorker:
    """Per worker process: built on first use, so after Celery's fork. ``celery``: the app
    whose broker the worker hands ordered deliveries to."""
    if id(settings) not in _workers:
        _workers[id(settings)] = build_worker(settings, send=CeleryBroker(celery).send)
    return _workers[id(settings)]


def build_worker(settings: Settings,
                 send: Callable[[Sequence[Pair]], None] | None = None) -> DeliveryWorker:
    # The pool of transactions pings what it checks out: a handler's writes or failure
    # must not fail on a connection PostgreSQL dropped (a restart). The autocommit pool
    # of the claim and the plain success, on the hot path, does not (a round trip per
    # checkout): its claim is tried again once instead (DeliveryWorker._claim), and a
    # plain success that fails is recorded as a failed attempt through the pinged pool.
    engine = _planning_generically(sync_engine(
        settings.database_url or "", pool_size=2, max_overflow=2, pool_pre_ping=True))
    single_statements = _planning_generically(sync_engine(
        settings.database_url or "", pool_size=1, max_overflow=2, isolation_level="AUTOCOMMIT"))
    # Short timeouts: an announcement is best effort, and the thread that renews leases
    # also announces long attempts (a Redis that stalls may delay a renewal by as much).
    client = redis.Redis.from_url(settings.redis_url or "", socket_timeout=ANNOUNCE_TIMEOUT,
                                  socket_connect_timeout=ANNOUNCE_TIMEOUT)
    channels = Channels(settings.channel_prefix)

    def announce(notice: Notice) -> None:
        try:
            with client.pipeline(transaction=False) as publishes:  # one round trip
                for event_id in notice.deliveries:
                    publishes.publish(channels.deliveries, event_id)
                if notice.committed:
                    publishes.publish(channels.wake, "")
                publishes.execute()
        except redis.RedisError:  # only latency is lost: the sequencer and watchers also poll
            log.warning("could not announce %s", notice, exc_info=True)

    return DeliveryWorker(
        engine=engine,
        handlers=Handlers.of(load_handlers(settings.workers_path)),
        models=model_table(load_models(settings.schema_path)),
        max_document_bytes=settings.max_document_bytes,
        max_id_length=settings.max_id_length,
        handler_timeout=settings.handler_timeout,
        dispatch_timeout=settings.dispatch_timeout, send=send,
        single_statements=single_statements,
        notify=announce,
    )

