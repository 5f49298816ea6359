"""Child processes that `statesync dev` supervises, stopped without leaving orphans."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from typing import IO


@contextlib.contextmanager
def supervised(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, stop_timeout: float = 15.0,
    stdout: int | IO[bytes] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in its own process group; on exit, stop the whole group.

    The leader gets SIGTERM and ``stop_timeout`` to shut down gracefully (a Celery worker
    finishes its tasks). Then the group gets SIGKILL: a Celery worker can leave forked
    children behind (its embedded beat, pool processes), and an orphan that inherited our
    stdout keeps whoever reads it waiting forever. Its own session also keeps a terminal's
    Ctrl-C away from the child, so we decide the order things stop in.
    """
    process = subprocess.Popen(
        list(args), env=dict(env) if env is not None else None, stdout=stdout,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(stop_timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
