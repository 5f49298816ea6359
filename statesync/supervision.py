"""Background tasks that never take the process down.

The sequencer, the feed listener and the in-process relay each loop forever and handle
the failures they expect (a lost connection) themselves. Anything else is a bug or a
poisoned input, and stopping the whole API for it would turn one bad row into an outage:
the supervisor logs it with its traceback, waits (doubling from ``first_delay`` up to
``max_delay``, reset once the task has run well for ``max_delay``) and starts the task
again. Every task runs in the caller's ``TaskGroup``, so none outlives the app.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


def being_cancelled() -> bool:
    """Whether this task is being cancelled. A driver cancelled in the middle of an
    operation may raise an error of its own instead of the CancelledError (asyncpg closes
    the connection, and SQLAlchemy raises "connection is closed"): a loop that retries such
    errors has to ask, or it swallows the cancellation and the app never shuts down."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that an error stands in for (see :func:`being_cancelled`)."""
    if being_cancelled():
        raise asyncio.CancelledError


@dataclass
class Supervised:
    name: str
    run: Callable[[], Awaitable[None]]
    restarts: int = 0
    last_error: str | None = None
    task: asyncio.Task[None] | None = None


class Supervisor:
    def __init__(self, first_delay: float = 0.5, max_delay: float = 30.0) -> None:
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.tasks: dict[str, Supervised] = {}

    def start(self, group: asyncio.TaskGroup, name: str, run: Callable[[], Awaitable[None]]
              ) -> Supervised:
        supervised = self.tasks[name] = Supervised(name, run)
        supervised.task = group.create_task(self._keep(supervised), name=name)
        return supervised

    def cancel(self) -> None:
        for supervised in self.tasks.values():
            if supervised.task is not None:
                supervised.task.cancel()

    async def _keep(self, supervised: Supervised) -> None:
        loop = asyncio.get_running_loop()
        delay = self.first_delay
        while True:
            started = loop.time()
            try:
                await supervised.run()
                error = "it returned, but it should run until cancelled"
                log.error("background task %s stopped: %s; restarting in %.1fs",
                          supervised.name, error, delay)
            except Exception as exc:
                raise_if_cancelled()
                error = f"{type(exc).__name__}: {exc}"
                log.error("background task %s failed; restarting in %.1fs", supervised.name, delay,
                          exc_info=exc)
            supervised.restarts += 1
            supervised.last_error = error
            if loop.time() - started >= self.max_delay:
                delay = self.first_delay  # it had been running well: this is a new trouble
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay)
