"""Settings, read from ``STATESYNC_*`` environment variables (and a ``.env`` file).

Every option is documented in the README's configuration table; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STATESYNC_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL (postgresql://...). Unset: `statesync dev` embeds one.",
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL (redis://...). Unset: `statesync dev` embeds one."
    )
    data_dir: Path = Field(
        default=Path(".statesync"),
        description="Where `statesync dev` keeps the embedded PostgreSQL and Redis data.",
    )
    schema_path: Path = Field(
        default=Path("schema"),
        description="Folder (or .py file) declaring the deployment's models.",
    )
    workers_path: Path = Field(
        default=Path("workers"),
        description="Folder (or .py file) with the deployment's @handler functions.",
    )
    broker_url: str | None = Field(
        default=None, description="Celery broker URL (redis:// or amqp://). Unset: the Redis URL."
    )
    queue: str = Field(default="statesync", description="Celery queue the handlers' tasks use.")
    handler_timeout: float = Field(
        default=300.0,
        description="Seconds a running delivery's lease lasts; its worker renews it every third "
                    "of that while the handler runs, and a delivery whose worker died is "
                    "redelivered once it runs out.",
    )
    relay_poll_interval: float = Field(
        default=1.0, description="Seconds between the relay's safety polls (NOTIFY wakes it sooner)."
    )
    sweep_interval: float = Field(
        default=5.0, description="Seconds between TTL sweeps of expired documents (Celery beat)."
    )
    retention: float = Field(
        default=7 * 24 * 3600,
        description="Seconds statesync keeps changelog rows, mutation ids, settled events and "
                    "tombstones; older `since` cursors get RESYNC.",
    )
    prune_interval: float = Field(
        default=3600.0, description="Seconds between retention runs (Celery beat)."
    )
    host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    port: int = Field(default=8000, description="Port the API listens on.")
    channel_prefix: str = Field(
        default="statesync",
        description="Prefix of Redis channel names; deployments sharing a Redis need distinct ones.",
    )
    max_document_bytes: int = Field(
        default=256 * 1024, description="Largest document (serialized JSON) a commit accepts."
    )
    max_request_bytes: int = Field(
        default=1024 * 1024, description="Largest HTTP request body the API accepts."
    )
    max_page_size: int = Field(default=500, description="Largest `first` a list query accepts.")
    default_page_size: int = Field(default=50, description="`first` when a list query omits it.")
    subscriber_queue_size: int = Field(
        default=1000,
        description="Changes buffered per subscription; past it the subscriber is told to RESYNC.",
    )
    snapshot_chunk_size: int = Field(
        default=500, description="Documents per SNAPSHOT message of a collection subscription."
    )
    max_snapshot_documents: int = Field(
        default=10_000,
        description="Largest collection a subscription snapshots; past it the client must filter.",
    )
    feed_poll_interval: float = Field(
        default=0.5,
        description="Seconds between safety polls of the change feed (wake-ups make it faster).",
    )
    event_poll_interval: float = Field(
        default=2.0,
        description="Seconds between the `event(id)` subscription's safety re-reads "
                    "(workers' wake-ups make it faster).",
    )
    db_pool_size: int = Field(default=20, description="PostgreSQL connections per API process.")
    graphiql: bool = Field(default=True, description="Serve GraphiQL at /graphql.")
    demo: bool = Field(
        default=False,
        description="Serve the demo order board at / (`statesync dev` turns it on for the demo schema).",
    )
    log_level: str = Field(default="INFO", description="Python logging level.")


def environment(settings: Settings, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` plus ``settings`` as the STATESYNC_* variables a child process reads back."""
    env = dict(base)
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"STATESYNC_{name.upper()}"] = str(value)
    return env


def asyncpg_url(url: str) -> str:
    """SQLAlchemy wants the driver in the scheme; users write plain postgresql:// URLs."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url!r}")


def psycopg_url(url: str) -> str:
    """The sync driver the Celery workers use."""
    return "postgresql+psycopg://" + asyncpg_url(url).removeprefix("postgresql+asyncpg://")


def libpq_url(url: str) -> str:
    """The plain form, for asyncpg.connect and psql."""
    return "postgresql://" + asyncpg_url(url).removeprefix("postgresql+asyncpg://")
