"""Eventing processes put together from the settings: the relay on its own
(`statesync relay`) or beside the API (`statesync dev`). The one place that hands the
relay a Celery broker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from statesync.config import Settings
from statesync.eventing import metrics
from statesync.eventing import statements as ev
from statesync.eventing.broker import CeleryBroker
from statesync.eventing.celery_app import create_celery
from statesync.eventing.handlers import Handlers, load_handlers
from statesync.eventing.relay import Relay
from statesync.store.engines import async_engine

log = logging.getLogger(__name__)


def relay_engine(settings: Settings, **pool: Any) -> AsyncEngine:
    """The relay's pool. Its connections commit lazily (``statements.LAZY_COMMITS``): all
    it writes but one step is bookkeeping a PostgreSQL crash only makes it repeat, and the
    one that is not says so (``statements.durable_commit``)."""
    return async_engine(settings.database_url or "",
                        connect_args={"server_settings": ev.LAZY_COMMITS}, **pool)


def build_relay(settings: Settings, engine: AsyncEngine) -> Relay:
    return Relay(engine, settings.database_url or "", CeleryBroker(create_celery(settings)),
                 Handlers.of(load_handlers(settings.workers_path)),
                 poll_interval=settings.relay_poll_interval,
                 dispatch_timeout=settings.dispatch_timeout)


async def run_relay(settings: Settings) -> None:
    """`statesync relay`: the relay alone, until interrupted (Ctrl-C) or told to stop
    (SIGTERM, what `docker stop` and Kubernetes send): either way it releases its role
    and connections and exits 0."""
    engine = relay_engine(settings, pool_size=4)
    if settings.metrics_port is not None:
        metrics.serve(settings.metrics_port, settings.host)
    relaying = asyncio.create_task(build_relay(settings, engine).run(), name="relay")
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, relaying.cancel)
    try:
        await relaying
    except asyncio.CancelledError:
        if not relaying.cancelled():
            raise  # we were cancelled ourselves (Ctrl-C): let asyncio.run see it
        log.info("relay stopped")
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await engine.dispose()


@contextlib.asynccontextmanager
async def relay_beside(settings: Settings) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """The relay as a companion of the API process (``statesync.app.running``): its own
    small pool, disposed when the API stops."""
    engine = relay_engine(settings, pool_size=2, max_overflow=0)
    try:
        yield build_relay(settings, engine).run
    finally:
        await engine.dispose()
