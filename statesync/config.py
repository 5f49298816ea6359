"""Settings, read from ``STATESYNC_*`` environment variables (and a ``.env`` file).

Every option is documented in the README's configuration table; keep the two in step.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
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
        default=10.0,
        description="Seconds a running delivery's lease lasts; its worker renews it every third "
                    "of that while the handler runs, and a delivery whose worker died (or "
                    "stopped renewing) is sent again once it runs out.",
    )
    dispatch_timeout: float = Field(
        default=10.0,
        description="Seconds a delivery sent to the broker may wait for a worker to start it "
                    "before the relay sends it again (the broker lost it, or a worker died "
                    "holding it); a worker that starts it late finds it taken and skips it.",
    )
    relay_poll_interval: float = Field(
        default=1.0, description="Seconds between the relay's safety polls (NOTIFY wakes it sooner) "
                                "and between its looks for expired leases."
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
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="Port on which `statesync relay` and `statesync worker` serve /metrics "
                    "(the API serves its own at /metrics). Unset: they serve none.")
    host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    port: int = Field(default=8000, description="Port the API listens on.")
    workers: int = Field(
        default=1, ge=1, description="API processes `statesync serve` runs on its port (one per core)."
    )
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
    db_pool_size: int = Field(
        default=20, description="PostgreSQL connections per API process for client work "
                                "(the feed has its own few)."
    )
    db_pool_timeout: float = Field(
        default=5.0, gt=0,
        description="Seconds a request waits for a free connection before it is answered "
                    "SERVICE_UNAVAILABLE (nothing done; safe to retry).",
    )
    db_connections_per_client: int = Field(
        default=2, ge=1,
        description="Connections one HTTP request, or one websocket with all its "
                    "subscriptions, may use at once.",
    )
    max_concurrent_snapshots: int = Field(
        default=4, ge=1,
        description="Subscription snapshots and replays read at once per process; "
                    "the others queue, so commits keep their connections.",
    )
    bulk_work_share: float = Field(
        default=0.1, gt=0, le=1,
        description="Share of the process's time that bulk work (rendering snapshot chunks, "
                    "preparing documents the cache has not seen) may take while requests are "
                    "being answered; alone, it runs back to back.",
    )
    max_query_tokens: int = Field(
        default=2000, ge=100,
        description="Lexical tokens in one GraphQL document (GraphiQL's introspection takes ~200).",
    )
    max_query_depth: int = Field(default=15, ge=2, description="Nesting of selections, fragments expanded.")
    max_aliases: int = Field(default=100, ge=0, description="Aliases in one GraphQL document.")
    max_directives: int = Field(default=50, ge=0, description="Directives in one GraphQL document.")
    max_root_fields: int = Field(default=20, ge=1, description="Distinct top-level fields of one operation.")
    max_field_repeats: int = Field(
        default=10, ge=1,
        description="Times one response name may be selected in one selection set (fragments included).",
    )
    max_query_cost: int = Field(
        default=25_000, ge=100,
        description="Fields an answer can hold: each field 1, times `first` under a field taking it.",
    )
    max_input_depth: int = Field(
        default=32, ge=4, description="Nesting of input values: literals, variables, JSON fields, payloads."
    )
    max_input_values: int = Field(
        default=20_000, ge=100,
        description="JSON values in one request's variables (each object, list, string, number).",
    )
    max_filter_values: int = Field(
        default=1000, ge=10,
        description="Comparisons plus listed values (`in`, `notIn`, `between`) in one `where`.",
    )
    max_id_length: int = Field(
        default=256, ge=16, le=512,
        description="Characters in a document id, mutationId, event type or key (at most 512: "
                    "PostgreSQL's index rows cap them).",
    )
    operation_cache_bytes: int = Field(
        default=16 * 1024 * 1024, ge=0,
        description="Memory for parsed and validated documents, estimated from their size; "
                    "the least recently used go first.",
    )
    max_message_bytes: int = Field(
        default=1024 * 1024, ge=1024,
        description="Largest websocket message the API accepts (larger: closed with 1009).",
    )
    max_subscriptions_per_connection: int = Field(
        default=100, ge=1, description="Operations one websocket may run at once."
    )
    max_connections: int = Field(
        default=10_000, ge=1,
        description="Open HTTP connections and websockets per API process; past it HTTP answers "
                    "503 and websockets are refused.",
    )
    http_header_timeout: float = Field(
        default=10.0, gt=0,
        description="Seconds a connection has to send a request's headers (new or kept alive).",
    )
    http_body_timeout: float = Field(
        default=30.0, gt=0, description="Seconds a request has to send its whole body (then 408)."
    )
    ws_init_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a websocket has to send `connection_init` (then 4408)."
    )
    ws_send_timeout: float = Field(
        default=10.0, gt=0,
        description="Seconds a websocket (or a streamed HTTP response, such as server-sent events) "
                    "may leave what it was sent unread before it is cut off, so a client that "
                    "stops reading holds no memory.",
    )
    graphiql: bool = Field(
        default=False, description="Serve GraphiQL at /graphql (`statesync dev` turns it on)."
    )
    console: bool = Field(
        default=False, description="Serve the operator console at /console: the service's "
                                   "state, the live changes, events and dead letters, for the "
                                   "admin (`statesync dev` turns it on).")
    admin_secret: str | None = Field(
        default=None,
        description="The admin secret (header `X-Statesync-Admin-Secret`): may do everything.",
    )
    open_access: bool = Field(
        default=False,
        description="Requests without credentials act as the admin. Only for trusted networks; "
                    "logged loudly at start.",
    )
    anonymous_role: str = Field(
        default="anonymous", description="The role of requests without credentials."
    )
    jwt_secret: str | None = Field(default=None, description="Shared secret of HS256 JWTs.")
    jwt_jwks_url: str | None = Field(
        default=None, description="JWKS URL of RS256/ES256 JWT keys (fetched, cached, refreshed on an "
                                  "unknown `kid`)."
    )
    jwt_algorithms: str = Field(
        default="", description="Comma-separated JWT algorithms; empty: HS256 with `jwt_secret`, "
                                "RS256,ES256 with `jwt_jwks_url`."
    )
    jwt_issuer: str | None = Field(default=None, description="Required `iss` of JWTs, when set.")
    jwt_audience: str | None = Field(default=None, description="Required `aud` of JWTs, when set.")
    jwt_leeway: float = Field(
        default=5.0, ge=0, description="Seconds of clock skew allowed on `exp` and `nbf`."
    )
    jwt_claims_namespace: str = Field(
        default="https://hasura.io/jwt/claims",
        description="The JWT claim holding statesync's claims (Hasura's by default); empty: the top level.",
    )
    jwt_user_id_claim: str = Field(
        default="x-hasura-user-id", description="Claim of the user id (else `sub`)."
    )
    jwt_default_role_claim: str = Field(
        default="x-hasura-default-role", description="Claim of the default role."
    )
    jwt_allowed_roles_claim: str = Field(default="x-hasura-allowed-roles",
                                         description="Claim of the roles a request may choose.")
    jwks_refresh_interval: float = Field(
        default=300.0, gt=0, description="Seconds JWKS keys are kept before a refetch."
    )
    dev_tokens: bool = Field(
        default=False,
        description="Serve `POST /dev/token` minting HS256 tokens for any user (`statesync dev` only).",
    )
    cors_origins: str = Field(
        default="", description="Comma-separated origins allowed to call the API from a browser (and to "
                                "open websockets); `*` for any; empty: same origin only."
    )
    allowed_hosts: str = Field(
        default="localhost,127.0.0.1,::1",
        description="Comma-separated Host header values the API answers (`*` for any): "
                    "DNS rebinding protection.",
    )
    introspection: str = Field(
        default="admin", pattern="^(admin|all)$",
        description="Who may introspect the schema: `admin` or `all` (`statesync dev`).",
    )
    suggestions: bool = Field(
        default=False, description='"Did you mean" in validation errors (`statesync dev` turns them on).'
    )
    max_websockets_per_identity: int = Field(
        default=50, ge=1, description="Websockets one identity may hold open per process (then 1013)."
    )
    max_subscriptions_per_identity: int = Field(
        default=1000, ge=1,
        description="Subscriptions one identity may run at once per process (TOO_MANY_SUBSCRIPTIONS).",
    )
    commit_rate_per_identity: float = Field(
        default=50.0, gt=0,
        description="Commits and emits per second one identity may make, per process (RATE_LIMITED); "
                    "the admin is not limited.",
    )
    commit_burst_per_identity: int = Field(
        default=100, ge=1, description="Commits one identity may make at once before the rate applies."
    )
    demo: bool = Field(
        default=False,
        description="Serve the demo order board at / (`statesync dev` turns it on for the demo schema).",
    )
    log_level: str = Field(default="INFO", description="Python logging level.")
    quiet_logs: bool = Field(
        default=False, description="Keep the embedded servers' and the scheduled tasks' lines to "
                                   "warnings (`statesync dev` turns it on).")
    log_format: Literal["text", "json"] = Field(
        default="text", description="`text` lines, or one JSON object a line with the request id.")


ENV_PREFIX = "STATESYNC_"
# Variables of statesync's own tests and benchmarks, which are not settings.
NOT_SETTINGS = ("STATESYNC_TEST_", "STATESYNC_BENCH_")


def unknown_variables(env: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``STATESYNC_*`` variables no setting reads (a typo is silently ignored otherwise),
    each with the setting it most likely meant."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    found = []
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name not in known and not name.startswith(NOT_SETTINGS):
            close = difflib.get_close_matches(name, known, n=1)
            found.append((name, close[0] if close else None))
    return found


def describe_invalid(error: ValidationError) -> list[str]:
    """A settings error as lines naming the variables: ``STATESYNC_PORT: ... (got 'abc')``."""
    lines = []
    for problem in error.errors():
        variable = ENV_PREFIX + "_".join(str(p) for p in problem["loc"]).upper()
        got = problem.get("input")
        shown = f" (got {got!r})" if isinstance(got, str | int | float) else ""
        lines.append(f"{variable}: {problem['msg']}{shown}")
    return lines


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


def listed(value: str) -> list[str]:
    """A comma-separated setting as its items."""
    return [item.strip() for item in value.split(",") if item.strip()]
