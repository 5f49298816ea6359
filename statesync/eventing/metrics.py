"""What the relay and the delivery workers count. Served by the process that does the work
on ``STATESYNC_METRICS_PORT`` (:func:`serve`); the relay beside the API (`statesync dev`)
is counted in the API's ``/metrics``.

A Celery worker's attempts run in its pool's processes: ``statesync worker`` gives them a
``PROMETHEUS_MULTIPROC_DIR`` before Celery starts, and the worker's main process serves
the sum of its pool's figures.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)

log = logging.getLogger(__name__)

HANDLER_SECONDS = Histogram(
    "statesync_handler_seconds", "Time of one delivery attempt: the handler and its writes.",
    ["handler"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
ATTEMPTS = Counter(
    "statesync_handler_attempts", "Delivery attempts, by handler and outcome: succeeded, "
    "retrying, dead (a dead letter), superseded (another attempt owned it by then).",
    ["handler", "outcome"])
RELAY_ACTIVE = Gauge("statesync_relay_active", "1 while this process holds the relay's role.",
                     multiprocess_mode="livemax")
RELAY_DISPATCHED = Counter("statesync_relay_dispatched",
                           "Deliveries the relay sent to the broker (resends included).")
RELAY_FAILED_ROUNDS = Counter("statesync_relay_failed_rounds",
                              "Relay rounds that failed (a server away, a bug) and were retried.")


def serve(port: int, host: str) -> None:
    """Expose this process's figures, or its pool's under ``PROMETHEUS_MULTIPROC_DIR``, on
    ``host`` (STATESYNC_HOST): unauthenticated, like most exporters, so bind it where only
    the scraper reaches."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, host, registry=registry)
    log.info("metrics at http://%s:%d/metrics", host, port)
