"""compose.yaml and the Dockerfile agree with the real CLI and settings (no Docker needed).

Each check returns the problems it finds, so the same checks are run against the
shipped files (no problems) and against broken copies (each must be caught).
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml

from statesync.cli import app
from statesync.config import Settings

ROOT = Path(__file__).resolve().parent.parent.parent
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

STATESYNC_ROLES = {"migrate", "api", "relay", "worker", "beat"}
REQUIRED = {"postgres", "redis", *STATESYNC_ROLES}
HTTP_ROLES = {"api"}  # the only roles that listen; the image's /healthz check fits only them
SCALABLE = {"api", "worker"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
SETTINGS = {f"STATESYNC_{name.upper()}" for name in Settings.model_fields}
PACKAGE_DIRS = [Path(folder) for folder in tomllib.loads((ROOT / "pyproject.toml").read_text())
                ["tool"]["setuptools"]["package-dir"].values()]

Compose = dict[str, Any]


def load_compose() -> Compose:
    data: Compose = yaml.safe_load(COMPOSE.read_text())
    return data


def cli_command(words: list[str]) -> tuple[Any, list[str]] | None:
    """The click command that ``statesync <words>`` runs and its remaining args, or None."""
    command: Any = typer.main.get_command(app)
    words = list(words)
    while words and hasattr(command, "commands") and words[0] in command.commands:
        command = command.commands[words.pop(0)]
    if hasattr(command, "commands"):
        return None  # a group (or the bare `statesync`): not something that runs
    return command, words


def command_problems(where: str, argv: Any) -> list[str]:
    """``argv`` must be ``statesync <existing command> [args it accepts]``."""
    if isinstance(argv, str):
        argv = shlex.split(argv)
    if not isinstance(argv, list) or not argv or argv[0] != "statesync":
        return [f"{where}: command {argv!r} is not `statesync <command>`"]
    if argv[1:2] == ["dev"]:
        return [f"{where}: `statesync dev` embeds PostgreSQL and Redis; not for a deployment"]
    found = cli_command(argv[1:])
    if found is None:
        return [f"{where}: `{' '.join(argv)}` is not a statesync command"]
    command, args = found
    try:
        command.make_context(" ".join(argv), list(args))
    except Exception as exc:  # click's usage errors (typer vendors click, so no public class)
        return [f"{where}: `{' '.join(argv)}` is rejected by the CLI: {exc}"]
    return []


def environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def healthcheck_text(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test", "")
    return " ".join(test) if isinstance(test, list) else str(test)


def healthcheck_disabled(service: dict[str, Any]) -> bool:
    check = service.get("healthcheck") or {}
    return bool(check.get("disable")) or check.get("test") in (["NONE"], "NONE")


def replicas(service: dict[str, Any]) -> int:
    return int(service.get("deploy", {}).get("replicas", service.get("scale", 1)))


# --- the checks -------------------------------------------------------------------------

def services_problems(compose: Compose) -> list[str]:
    services = compose.get("services") or {}
    problems = [f"service {name} is missing" for name in sorted(REQUIRED - set(services))]
    for name in ("postgres", "redis"):
        service = services.get(name, {})
        if "build" in service or not str(service.get("image", "")).startswith(f"{name}:"):
            problems.append(f"{name}: must run the official {name} image, not a build")
    for name in sorted(STATESYNC_ROLES & set(services)):
        build = services[name].get("build")
        context = build.get("context") if isinstance(build, dict) else build
        if context not in (".", "./"):
            problems.append(f"{name}: must be built from the Dockerfile (build: .), got {build!r}")
    return problems


def commands_problems(compose: Compose) -> list[str]:
    services = compose.get("services") or {}
    expected = {"migrate": "migrate", "api": "serve", "relay": "relay", "worker": "worker",
                "beat": "beat"}
    problems = []
    for name, subcommand in expected.items():
        if name not in services:
            continue
        argv = services[name].get("command")
        problems += command_problems(name, argv)
        words = shlex.split(argv) if isinstance(argv, str) else list(argv or [])
        if words[1:2] != [subcommand]:
            problems.append(f"{name}: runs {words!r}, want `statesync {subcommand}`")
    return problems


def depends_on_problems(compose: Compose) -> list[str]:
    services = compose.get("services") or {}
    problems = []
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {dep: {"condition": "service_started"} for dep in depends}
        for dep, spec in depends.items():
            condition = (spec or {}).get("condition", "service_started")
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep}")
                continue
            if condition not in CONDITIONS:
                problems.append(f"{name}: unknown depends_on condition {condition!r}")
            if condition == "service_healthy" and (
                    "healthcheck" not in services[dep] or healthcheck_disabled(services[dep])):
                problems.append(f"{name}: waits for {dep} healthy, but {dep} has no healthcheck")
            if condition == "service_completed_successfully" and \
                    services[dep].get("restart", "no") not in ("no", False):
                problems.append(f"{name}: waits for {dep} to complete, but {dep} restarts")

    def needs(name: str, dep: str, condition: str) -> None:
        depends = (services.get(name) or {}).get("depends_on") or {}
        if not isinstance(depends, dict) or (depends.get(dep) or {}).get("condition") != condition:
            problems.append(f"{name}: must depend on {dep} with {condition}")

    if "migrate" in services:
        needs("migrate", "postgres", "service_healthy")
    for name in sorted({"api", "relay", "worker", "beat"} & set(services)):
        needs(name, "migrate", "service_completed_successfully")
        needs(name, "redis", "service_healthy")
    return problems


def healthcheck_problems(compose: Compose) -> list[str]:
    services = compose.get("services") or {}
    problems = []
    wanted = {"postgres": "pg_isready", "redis": "redis-cli ping", "api": "/healthz"}
    for name, fragment in wanted.items():
        if name in services and (healthcheck_disabled(services[name])
                                 or fragment not in healthcheck_text(services[name])):
            problems.append(f"{name}: needs a healthcheck running {fragment!r}")
    for name in sorted((STATESYNC_ROLES - HTTP_ROLES) & set(services)):
        service = services[name]
        # Without its own check a role inherits the image's HTTP check and turns unhealthy.
        if "healthcheck" not in service or "/healthz" in healthcheck_text(service):
            problems.append(f"{name}: listens on no port: disable the image's /healthz check "
                            "or give it a check of its own")
    return problems


def scaling_problems(compose: Compose) -> list[str]:
    services = compose.get("services") or {}
    problems = []
    if "relay" in services and replicas(services["relay"]) != 2:
        problems.append("relay: want deploy.replicas 2 (one active, one hot standby)")
    if "beat" in services and replicas(services["beat"]) > 1:
        problems.append("beat: more than one beat schedules every sweep twice")
    for name in sorted((SCALABLE | {"relay"}) & set(services)):
        if "container_name" in services[name]:
            problems.append(f"{name}: container_name prevents scaling")
    for port in (services.get("api") or {}).get("ports", []):
        text = str(port.get("published", "") if isinstance(port, dict) else port)
        host = text.rsplit(":", 1)[0] if ":" in text else ""
        if host and "-" not in host:
            problems.append(f"api: fixed host port {text!r} allows one node only; "
                            "publish the container port alone or a host range")
    if not (services.get("api") or {}).get("ports"):
        problems.append("api: publishes no port")
    return problems


def environment_problems(compose: Compose) -> list[str]:
    services = compose.get("services") or {}
    problems = []
    blocks = {name: environment(service) for name, service in services.items()}
    blocks.update({key: environment(value) for key, value in compose.items()
                   if key.startswith("x-") and isinstance(value, dict)})
    for where, env in blocks.items():
        for key in sorted(env):
            if key.startswith("STATESYNC_") and key not in SETTINGS:
                problems.append(f"{where}: {key} is not a statesync setting")
    postgres = environment(services.get("postgres") or {})
    for name in sorted(STATESYNC_ROLES & set(services)):
        env = blocks[name]
        database, redis = env.get("STATESYNC_DATABASE_URL"), env.get("STATESYNC_REDIS_URL")
        if not database or not redis:
            problems.append(f"{name}: needs STATESYNC_DATABASE_URL and STATESYNC_REDIS_URL")
            continue
        db = urlsplit(str(database))
        if db.scheme not in ("postgresql", "postgres") or db.hostname != "postgres":
            problems.append(f"{name}: STATESYNC_DATABASE_URL does not point at the postgres service")
        elif db.username != postgres.get("POSTGRES_USER") or \
                db.path.lstrip("/") != postgres.get("POSTGRES_DB"):
            problems.append(f"{name}: STATESYNC_DATABASE_URL user/database differ from postgres's")
        if urlsplit(str(redis)).hostname != "redis":
            problems.append(f"{name}: STATESYNC_REDIS_URL does not point at the redis service")
    return problems


COMPOSE_CHECKS: list[Callable[[Compose], list[str]]] = [
    services_problems, commands_problems, depends_on_problems, healthcheck_problems,
    scaling_problems, environment_problems,
]


def compose_problems(compose: Compose) -> list[str]:
    return [problem for check in COMPOSE_CHECKS for problem in check(compose)]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in (raw.strip() for raw in joined.splitlines()) if line]


def exec_form(args: str) -> list[str]:
    args = args.strip()
    return list(json.loads(args)) if args.startswith("[") else shlex.split(args)


def dockerfile_problems(text: str, ignored: list[str]) -> list[str]:
    instructions = dockerfile_instructions(text)
    problems = []
    froms = [args for op, args in instructions if op == "FROM"]
    if not froms or not froms[-1].split()[0].startswith("python:3.11-slim"):
        problems.append("the image must be based on python:3.11-slim")
    runs = " ".join(args for op, args in instructions if op == "RUN")
    if not re.search(r"pip install (--\S+ )*\.(\s|$)", runs):
        problems.append("the package must be installed with `pip install .`")
    sources = [Path(part) for op, args in instructions if op == "COPY"
               for part in exec_form(args)[:-1] if not part.startswith("--")]
    copied = {source.parts[0] for source in sources}
    # alembic.ini is for developers; `statesync migrate` configures Alembic itself.
    for needed in ("pyproject.toml", "statesync", "schema", "workers", "migrations"):
        if needed not in copied:
            problems.append(f"{needed} is not copied into the image")
    # Folders pyproject maps into the package must be in the image for `pip install .`.
    for mapped in PACKAGE_DIRS:
        if not any(mapped == source or mapped.is_relative_to(source) for source in sources):
            problems.append(f"{mapped} (a package-dir in pyproject.toml) is not copied")
    for source in sorted(copied):
        if not (ROOT / source).exists():
            problems.append(f"COPY {source}: no such file in the repository")
        if source in ignored:
            problems.append(f"COPY {source}: excluded from the build context by .dockerignore")
    users = [args.strip() for op, args in instructions if op == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the image must run as a non-root USER")
    envs = " ".join(args for op, args in instructions if op == "ENV")
    for key in re.findall(r"\b(STATESYNC_[A-Z_]+)=", envs):
        if key not in SETTINGS:
            problems.append(f"ENV {key} is not a statesync setting")
    if not re.search(r"\bSTATESYNC_HOST=0\.0\.0\.0\b", envs):
        problems.append("ENV STATESYNC_HOST=0.0.0.0 is missing: the API would listen on loopback")
    checks = [args for op, args in instructions if op == "HEALTHCHECK"]
    if not checks or "/healthz" not in checks[-1] or "python" not in checks[-1]:
        problems.append("a HEALTHCHECK must GET /healthz with python")
    cmds = [exec_form(args) for op, args in instructions if op == "CMD"]
    entry = [exec_form(args) for op, args in instructions if op == "ENTRYPOINT"]
    argv = (entry[-1] if entry else []) + (cmds[-1] if cmds else [])
    problems += command_problems("Dockerfile CMD/ENTRYPOINT", argv)
    if argv[:2] != ["statesync", "serve"]:
        problems.append(f"the default command is {argv!r}, want `statesync serve`")
    return problems


def dockerignored() -> list[str]:
    return [line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


# --- the shipped files --------------------------------------------------------------------

def test_the_cli_has_the_commands_the_deployment_runs() -> None:
    for argv in (["statesync", "serve"], ["statesync", "migrate"], ["statesync", "relay"],
                 ["statesync", "worker", "--concurrency", "2"], ["statesync", "beat"]):
        assert command_problems("check", argv) == []


def compose_spec_errors(compose: Compose) -> list[str]:
    """Errors against the Compose spec's JSON schema (vendored by check-jsonschema)."""
    pytest.importorskip("check_jsonschema", reason="check-jsonschema ships the compose-spec schema")
    import importlib.resources

    import jsonschema

    schema = json.loads(importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
                        .joinpath("compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(compose)]


def test_compose_is_valid_compose_spec() -> None:
    assert compose_spec_errors(load_compose()) == []


@pytest.mark.parametrize("breakage", ["unknown key", "unknown condition", "bad healthcheck"])
def test_compose_spec_violations_are_caught(breakage: str) -> None:
    compose = copy.deepcopy(load_compose())
    service = compose["services"]["relay"]
    if breakage == "unknown key":
        service["replica"] = 2
    elif breakage == "unknown condition":
        service["depends_on"] = {"migrate": {"condition": "service_done"}}
    else:
        service["healthcheck"] = {"test": ["CMD", "true"], "interval": 10, "disabel": True}
    assert compose_spec_errors(compose)


@pytest.mark.parametrize("check", COMPOSE_CHECKS, ids=lambda check: check.__name__)
def test_compose(check: Callable[[Compose], list[str]]) -> None:
    assert check(load_compose()) == []


def test_dockerfile() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text(), dockerignored()) == []


def test_dockerignore_keeps_what_the_build_needs_and_drops_local_state() -> None:
    ignored = dockerignored()
    for needed in ("pyproject.toml", "README.md", "statesync", "schema", "workers", "migrations"):
        assert needed not in ignored
    for local in (".git", ".venv", ".env", ".statesync", ".statesync-test", ".statesync-bench"):
        assert local in ignored


# --- broken copies must be caught -----------------------------------------------------------

def _set(path: str, value: Any) -> Callable[[Compose], None]:
    def apply(compose: Compose) -> None:
        *parents, last = path.split(".")
        node = compose
        for key in parents:
            node = node.setdefault(key, {})
        if value is _DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return apply


_DELETE = object()

BROKEN: dict[str, Callable[[Compose], None]] = {
    "typo'd subcommand": _set("services.relay.command", ["statesync", "relya"]),
    "shell-form typo": _set("services.worker.command", "statesync wroker"),
    "not statesync": _set("services.beat.command", ["celery", "beat"]),
    "a group, not a command": _set("services.migrate.command", ["statesync", "schema"]),
    "dev in production": _set("services.api.command", ["statesync", "dev"]),
    "unknown option": _set("services.api.command", ["statesync", "serve", "--bogus"]),
    "role swapped": _set("services.relay.command", ["statesync", "worker"]),
    "missing service": _set("services.beat", _DELETE),
    "relay not built": _set("services.relay.build", _DELETE),
    "unknown dependency": _set("services.api.depends_on.migrat",
                               {"condition": "service_completed_successfully"}),
    "bad condition": _set("services.api.depends_on.redis.condition", "service_ready"),
    "healthy without check": _set("services.redis.healthcheck", _DELETE),
    "migrate restarts": _set("services.migrate.restart", "on-failure"),
    "api without migrate": _set("services.api.depends_on.migrate", _DELETE),
    "api without healthcheck": _set("services.api.healthcheck", _DELETE),
    "relay inherits /healthz": _set("services.relay.healthcheck", _DELETE),
    "one relay": _set("services.relay.deploy.replicas", 1),
    "two beats": _set("services.beat.deploy.replicas", 2),
    "pinned api": _set("services.api.container_name", "statesync-api"),
    "fixed api port": _set("services.api.ports", ["8000:8000"]),
    "unknown setting": _set("x-statesync.environment.STATESYNC_DATABSE_URL", "postgresql://x"),
    "unknown setting in a service": _set("services.worker.environment",
                                         {"STATESYNC_CONCURENCY": "4"}),
    "wrong database host": _set("services.api.environment", {
        "STATESYNC_DATABASE_URL": "postgresql://statesync:x@localhost:5432/statesync",
        "STATESYNC_REDIS_URL": "redis://redis:6379/0"}),
}


@pytest.mark.parametrize("breakage", BROKEN, ids=list(BROKEN))
def test_broken_compose_is_caught(breakage: str) -> None:
    compose = copy.deepcopy(load_compose())
    BROKEN[breakage](compose)
    assert compose_problems(compose), f"{breakage} went unnoticed"


BROKEN_DOCKERFILE: dict[str, Callable[[str], str]] = {
    "typo'd CMD": lambda t: t.replace('CMD ["statesync", "serve"]', 'CMD ["statesync", "serv"]'),
    "dev as CMD": lambda t: t.replace('CMD ["statesync", "serve"]', 'CMD ["statesync", "dev"]'),
    "root": lambda t: t.replace("USER statesync", "USER root"),
    "no migrations": lambda t: t.replace("COPY migrations/ ./migrations/", ""),
    "unknown setting": lambda t: t.replace("STATESYNC_HOST=0.0.0.0", "STATESYNC_HOTS=0.0.0.0"),
    "no healthcheck": lambda t: re.sub(r"HEALTHCHECK [^\n]*\\\n[^\n]*\n", "", t),
    "other base": lambda t: t.replace("FROM python:3.11-slim", "FROM python:3.11"),
}


@pytest.mark.parametrize("breakage", BROKEN_DOCKERFILE, ids=list(BROKEN_DOCKERFILE))
def test_broken_dockerfile_is_caught(breakage: str) -> None:
    original = DOCKERFILE.read_text()
    broken = BROKEN_DOCKERFILE[breakage](original)
    assert broken != original, f"the mutation {breakage!r} no longer applies to the Dockerfile"
    assert dockerfile_problems(broken, dockerignored()), f"{breakage} went unnoticed"


def test_an_ignored_source_is_caught() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text(), [*dockerignored(), "workers"])
