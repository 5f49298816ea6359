"""The ``statesync`` command."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError

from statesync import logs
from statesync.config import Settings, describe_invalid, environment, unknown_variables
from statesync.processes import supervised

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="statesync: realtime state sync over GraphQL.")
schema_app = typer.Typer(no_args_is_help=True, help="The generated GraphQL schema.")
app.add_typer(schema_app, name="schema")

SchemaPath = Annotated[Path | None, typer.Option("--schema", help="Models folder or file.")]


def _settings(schema: Path | None = None, **overrides: object) -> Settings:
    settings = Settings()
    updates = {k: v for k, v in overrides.items() if v is not None}
    if schema is not None:
        updates["schema_path"] = schema
    return settings.model_copy(update=updates)


def _serve(settings: Settings, *, with_relay: bool = False, seed_demo: bool = False) -> None:
    from statesync import serving
    from statesync.app import create_app
    from statesync.migrate import upgrade

    upgrade(settings.database_url or "")
    if settings.workers > 1:
        _serve_workers(settings)
        return
    companions = None
    if with_relay:  # imported only then: `statesync serve` carries no Celery
        from statesync.eventing.entry import relay_beside

        companions = {"relay": relay_beside}
    app = create_app(settings, companions=companions, seed_demo=seed_demo)
    server = uvicorn.Server(serving.config(app, settings))
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it handled
        server.run()
    if not server.started:
        raise typer.Exit(3)  # uvicorn's own startup-failure status


def _serve_workers(settings: Settings) -> None:
    """Several API processes on one socket (what uvicorn.run does for ``workers``, with
    statesync's protocols and their timeouts). Each builds its app from the environment;
    each is a sequencer candidate and follows the feed, as separate `serve`s would."""
    from uvicorn.supervisors.multiprocess import Multiprocess

    from statesync import serving

    os.environ.update(environment(settings, {}))
    # One folder for every process's metrics, so a scrape of any sums them all.
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="statesync-metrics-"))
    config = serving.config(serving.APP_FACTORY, settings, factory=True, workers=settings.workers)
    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[config.bind_socket()]).run()


@app.command()
def dev(
    schema: SchemaPath = None,
    port: Annotated[int | None, typer.Option(help="API port.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Embedded data folder.")] = None,
) -> None:
    """Run everything on this machine: embedded PostgreSQL and Redis (unless URLs are set),
    migrations, a Celery worker and beat, and the API with GraphiQL and the demo board."""
    settings = _dev_settings(_settings(schema, port=port, data_dir=data_dir, demo=True))
    logs.configure(settings)
    with contextlib.ExitStack() as stack:
        if not settings.database_url or not settings.redis_url:
            from statesync.embedded import redis_server, start_postgres

            updates: dict[str, object] = {}
            if not settings.database_url:
                typer.echo(f"embedded PostgreSQL in {settings.data_dir}/postgres")
                updates["database_url"] = start_postgres(settings.data_dir)
            if not settings.redis_url:
                typer.echo(f"embedded Redis in {settings.data_dir}/redis")
                updates["redis_url"] = stack.enter_context(redis_server(settings.data_dir))
            settings = settings.model_copy(update=updates)
        stack.enter_context(_celery_processes(settings))
        base = f"http://{settings.host}:{settings.port}"
        typer.echo(f"statesync dev: GraphiQL at {base}/graphql, the demo board at {base}/, "
                   f"the console at {base}/console")
        if settings.open_access:
            typer.echo("  OPEN ACCESS (dev): requests without credentials act as the admin")
        typer.echo(f"  admin secret: {settings.admin_secret}  (header X-Statesync-Admin-Secret)")
        typer.echo("  a user's token: statesync token --user ann --role customer "
                   f"(or POST {base}/dev/token)")
        _serve(settings, with_relay=True, seed_demo=True)


def _dev_settings(settings: Settings) -> Settings:
    """What `statesync dev` turns on for a laptop: GraphiQL, introspection, suggestions, dev
    tokens, open access (unless a setting says otherwise), and generated secrets."""
    from statesync.auth.dev import dev_secrets

    explicit = settings.model_fields_set
    made = dev_secrets(settings.data_dir)
    updates: dict[str, object] = {"graphiql": True, "introspection": "all", "suggestions": True,
                                  "dev_tokens": True, "quiet_logs": True, "console": True}
    if "open_access" not in explicit:
        updates["open_access"] = True
    if not settings.admin_secret:
        updates["admin_secret"] = made["admin_secret"]
    if not settings.jwt_secret and not settings.jwt_jwks_url:
        updates["jwt_secret"] = made["jwt_secret"]
    return settings.model_copy(update={k: v for k, v in updates.items() if k not in explicit
                                       or k in ("admin_secret", "jwt_secret")})


@app.command()
def serve(
    schema: SchemaPath = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int | None, typer.Option(help="API processes on the port.")] = None,
) -> None:
    """Production entry: run migrations, then the API (and a sequencer candidate) on uvicorn.
    Needs STATESYNC_DATABASE_URL and STATESYNC_REDIS_URL; embeds nothing."""
    settings = _settings(schema, host=host, port=port, workers=workers)
    logs.configure(settings)
    if not settings.database_url or not settings.redis_url:
        typer.echo("statesync serve needs STATESYNC_DATABASE_URL and STATESYNC_REDIS_URL", err=True)
        raise typer.Exit(2)
    if not (settings.admin_secret or settings.jwt_secret or settings.jwt_jwks_url
            or settings.open_access):
        typer.echo("statesync serve needs credentials: STATESYNC_ADMIN_SECRET and/or "
                   "STATESYNC_JWT_SECRET or STATESYNC_JWT_JWKS_URL (or, on a trusted network "
                   "only, STATESYNC_OPEN_ACCESS=true)", err=True)
        raise typer.Exit(2)
    _serve(settings)


def _env(settings: Settings) -> dict[str, str]:
    """The settings a child process needs, as the environment it reads them from."""
    return environment(settings, os.environ)


def _celery_args(settings: Settings, command: str) -> list[str]:
    quiet = ["--quiet"] if settings.quiet_logs else []  # no banner
    return [sys.executable, "-m", "celery", "-A", "statesync.celery_app", *quiet, command,
            "--loglevel", settings.log_level]


@contextlib.contextmanager
def _celery_processes(settings: Settings) -> Iterator[None]:
    """A worker and a beat for `statesync dev`. Beat runs as its own process, not embedded
    with ``--beat``: an embedded beat can outlive its worker when stopped early."""
    env = _env(settings)
    worker = [*_celery_args(settings, "worker"), "--queues", settings.queue, "--concurrency", "2"]
    beat = [*_celery_args(settings, "beat"),
            "--schedule", str(settings.data_dir.resolve() / "celerybeat-schedule")]
    with supervised(worker, env=env), supervised(beat, env=env):
        yield


def _require_urls(settings: Settings, command: str) -> None:
    if not settings.database_url or not settings.redis_url:
        typer.echo(f"statesync {command} needs STATESYNC_DATABASE_URL and STATESYNC_REDIS_URL",
                   err=True)
        raise typer.Exit(2)


@app.command()
def relay() -> None:
    """Production entry: the outbox relay (run two: one active, one hot standby)."""
    from statesync.eventing.entry import run_relay

    settings = Settings()
    logs.configure(settings)
    _require_urls(settings, "relay")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_relay(settings))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Production entry: a Celery worker running the handlers (extra options go to Celery)."""
    settings = Settings()
    _require_urls(settings, "worker")
    if settings.metrics_port is not None:  # the pool's processes write where the main one reads
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR",
                              tempfile.mkdtemp(prefix="statesync-worker-metrics-"))
    args = [*_celery_args(settings, "worker"), "--queues", settings.queue, *ctx.args]
    os.execve(sys.executable, args, _env(settings))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def beat(ctx: typer.Context) -> None:
    """Production entry: Celery beat, scheduling the TTL sweep (run exactly one)."""
    settings = Settings()
    _require_urls(settings, "beat")
    os.execve(sys.executable, [*_celery_args(settings, "beat"), *ctx.args], _env(settings))


@app.command()
def migrate() -> None:
    """Apply statesync's migrations to STATESYNC_DATABASE_URL."""
    from statesync.migrate import upgrade

    settings = Settings()
    if not settings.database_url:
        typer.echo("statesync migrate needs STATESYNC_DATABASE_URL", err=True)
        raise typer.Exit(2)
    upgrade(settings.database_url)


@app.command()
def watch(
    model: Annotated[str, typer.Argument(help="The model, as the schema names it (Order).")],
    id: Annotated[str | None, typer.Argument(help="One document's id; without: the collection.")] = None,
    where: Annotated[str | None, typer.Option(help="A collection's filter, as JSON: "
                                              '\'{"status": {"eq": "NEW"}}\'.')] = None,
    fields: Annotated[str | None, typer.Option(help="The selection (GraphQL): 'status items { sku }'. "
                                               "Default: every plain field.")] = None,
    since: Annotated[str | None, typer.Option(help="Resume after this cursor.")] = None,
    url: Annotated[str | None, typer.Option(help="The API (default: STATESYNC_HOST:PORT).")] = None,
    token: Annotated[str | None, typer.Option(envvar="STATESYNC_TOKEN", help="A JWT.")] = None,
) -> None:
    """Print a subscription's messages as JSON lines (a SNAPSHOT, then every change) until
    Ctrl-C. Credentials: --token, or STATESYNC_ADMIN_SECRET; none in open access (dev)."""
    import orjson

    from statesync.client import Client, StatesyncClientError
    from statesync.watching import watch as run_watch

    settings = Settings()
    try:
        filter_ = None if where is None else orjson.loads(where)
    except orjson.JSONDecodeError as exc:
        typer.echo(f"--where is not JSON: {exc}", err=True)
        raise typer.Exit(2) from None
    if id is not None and filter_ is not None:
        typer.echo("watch one document (an id) or a collection (--where), not both", err=True)
        raise typer.Exit(2)

    def out(line: bytes) -> None:
        sys.stdout.buffer.write(line)
        sys.stdout.flush()

    async def main() -> None:
        async with Client(url or f"http://{settings.host}:{settings.port}", token=token,
                          admin_secret=None if token else settings.admin_secret) as client:
            await run_watch(client, model, id=id, where=filter_, fields=fields, since=since,
                            out=out)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    except (StatesyncClientError, LookupError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


@app.command()
def token(
    user: Annotated[str, typer.Option(help="The user id.")],
    role: Annotated[str, typer.Option(help="The role (the token's default role).")] = "user",
    roles: Annotated[list[str] | None, typer.Option("--also", help="More roles it may pick.")] = None,
    hours: Annotated[float, typer.Option(help="Lifetime.")] = 12.0,
) -> None:
    """Mint an HS256 JWT with STATESYNC_JWT_SECRET (or the dev secret of `statesync dev`'s
    data folder), in the configured claims shape: for development and tests."""
    from datetime import timedelta

    from statesync.auth.dev import dev_secrets, mint

    settings = Settings()
    if not settings.jwt_secret:
        if not (settings.data_dir / "dev-secrets.json").exists():
            typer.echo("no STATESYNC_JWT_SECRET, and no `statesync dev` data folder here", err=True)
            raise typer.Exit(2)
        settings = settings.model_copy(update={"jwt_secret": dev_secrets(settings.data_dir)["jwt_secret"]})
    typer.echo(mint(settings, user, role, roles, timedelta(hours=hours)))


@schema_app.command("print")
def schema_print(schema: SchemaPath = None) -> None:
    """Print the GraphQL SDL generated from the models (what frontends run codegen on)."""
    from statesync.api.schema import build_schema
    from statesync.loader import load_models

    settings = _settings(schema)
    typer.echo(build_schema(load_models(settings.schema_path)).as_str())


def _version(shown: bool) -> None:
    if shown:
        typer.echo(f"statesync {importlib.metadata.version('statesync')}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
             ) -> None:
    """statesync: realtime state sync over GraphQL."""


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    for name, meant in unknown_variables(os.environ):
        hint = f" (did you mean {meant}?)" if meant else ""
        typer.echo(f"warning: {name} is not a statesync setting{hint}; it is ignored", err=True)
    try:
        Settings()  # read once up front, so a bad variable is named, not a traceback
    except ValidationError as error:
        for line in describe_invalid(error):
            typer.echo(f"error: {line}", err=True)
        raise SystemExit(2) from None
    app()
