"""Serving the API under uvicorn: one process, or several sharing one port.

Each of several processes (`dialer-stats api --workers N`) runs the whole app: its own
Redis pool, its own updates subscription feeding the push streams it holds, and its own
metrics, written to files in one shared directory (prometheus-client's multiprocess mode)
that /metrics adds up, whichever process answers it.
"""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from api.main import create_app
from api.metrics import MULTIPROC_ENV
from processors.settings import Settings


def default_workers() -> int:
    """One process per core this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - not Linux


def settled(app: FastAPI) -> FastAPI:
    """`app`, with everything loaded so far (modules, routes, schemas: alive as long as the
    process) moved out of the garbage collector's reach: a full collection then takes a
    millisecond instead of tens, which was the p99 of reads."""
    gc.collect()
    gc.freeze()
    return app


def app_from_environment() -> FastAPI:
    """The app of one worker process, configured by the environment like the CLI."""
    return settled(create_app(Settings()))


@contextmanager
def metrics_directory(needed: bool) -> Iterator[None]:
    """The multiprocess metrics directory: the configured one emptied of an earlier run's
    files, else (when `needed`) a temporary one for this run, inherited by the workers."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        yield
    elif needed:
        with tempfile.TemporaryDirectory(prefix="dialer-stats-metrics-") as directory:
            os.environ[MULTIPROC_ENV] = directory
            try:
                yield
            finally:
                del os.environ[MULTIPROC_ENV]
    else:
        yield


def run(settings: Settings, *, host: str, port: int, workers: int) -> None:
    """Serve until stopped (SIGINT/SIGTERM); uvicorn's loop and parser are uvloop and
    httptools when installed (`uvicorn[standard]`)."""
    with metrics_directory(needed=workers > 1):
        if workers == 1:
            uvicorn.run(
                settled(create_app(settings)),
                host=host,
                port=port,
                log_level="info",
                access_log=False,
            )
            return
        # Worker processes are spawned: each imports the app afresh, with the multiprocess
        # directory already in its environment.
        uvicorn.run(
            "api.serve:app_from_environment",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level="info",
            access_log=False,
        )
