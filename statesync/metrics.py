"""What an API process counts, in the Prometheus text format at ``/metrics``.

Counters and histograms are updated where the work happens (a commit, an error answered,
a frame sent); the feed's and the eventing's state (head cursor, outbox backlog,
deliveries by status) is read from PostgreSQL when scraped. Under `statesync serve
--workers N` every process writes its values to ``PROMETHEUS_MULTIPROC_DIR`` (the
command sets one up) and a scrape of any of them reports the sum of all.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import REGISTRY

COMMITS = Counter("statesync_commits", "Writes committed, by model and op (CREATED, UPDATED, "
                  "DELETED; a replayed mutation id is op REPLAYED).", ["model", "op"])
COMMIT_SECONDS = Histogram(
    "statesync_commit_seconds", "Time to commit one write, from its transaction's start.",
    ["model"], buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
ERRORS = Counter("statesync_errors", "Errors answered to clients, by extensions.code.", ["code"])
WEBSOCKET_REFUSALS = Counter(
    "statesync_websocket_refusals", "Websockets the server closed with a protocol error code "
    "(4400 a malformed message, 4403 forbidden or expired, 4408 no init, ...).", ["code"])
FRAMES = Counter("statesync_frames_sent", "Subscription messages sent, by path: direct (from "
                 "the hub's loop) or stream (through the operation's own task).", ["path"])
RESYNCS = Counter("statesync_resyncs", "Subscriptions told RESYNC (a slow reader, or a `since` "
                  "older than the retention).")
SUBSCRIPTIONS = Gauge("statesync_subscriptions", "Subscriptions open.",
                      multiprocess_mode="livesum")
WEBSOCKETS = Gauge("statesync_websockets", "Websockets open.", multiprocess_mode="livesum")
SEQUENCER = Gauge("statesync_sequencer_active", "1 while this process sequences the feed.",
                  multiprocess_mode="livemax")
# Read from the database at scrape time; every process reads the same rows.
FEED_HEAD = Gauge("statesync_feed_head_cursor", "The feed's last sequenced cursor.",
                  multiprocess_mode="livemax")
FEED_LAG = Gauge("statesync_feed_lag", "Changes sequenced that this process has not yet "
                 "delivered (head cursor minus its last).", multiprocess_mode="livemax")
OUTBOX_BACKLOG = Gauge("statesync_outbox_backlog", "Events committed, not yet relayed.",
                       multiprocess_mode="livemax")
DELIVERIES = Gauge("statesync_deliveries", "Deliveries (event x handler) by status; "
                   "status=\"dead\" is the dead letters.", ["status"], multiprocess_mode="livemax")


def exposition() -> tuple[bytes, str]:
    """The current figures (of every process, under ``PROMETHEUS_MULTIPROC_DIR``)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
