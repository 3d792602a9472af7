"""Prometheus metrics of the API: request latency by route, and the /metrics endpoint.

With several API processes (`dialer-stats api --workers N`) every process writes its
samples to files in `PROMETHEUS_MULTIPROC_DIR` (prometheus-client's multiprocess mode) and
/metrics, whichever process answers it, adds up the files of all of them.
"""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_SECONDS = Histogram(
    "dialer_stats_http_request_seconds",
    "HTTP request latency by route and status code.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

#: Set (before prometheus_client is imported) in every process of a multi-process API.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

router = APIRouter(include_in_schema=False)


def exposition() -> bytes:
    """Every metric of this process, or of every process sharing the multiprocess dir;
    there, the `process_*` and `python_*` families are those of the process answering
    (prometheus-client cannot add those up across processes)."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        ProcessCollector(registry=registry)
        GCCollector(registry=registry)
        PlatformCollector(registry=registry)
        return generate_latest(registry)
    return generate_latest()


@router.get("/metrics")
async def metrics() -> Response:
    """Prometheus exposition."""
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


class ObserveRequests:
    """Pure ASGI middleware: time every request under its route template, not its raw path.

    Pure ASGI rather than `@app.middleware("http")` (Starlette's BaseHTTPMiddleware), which
    runs every request in a task of its own with memory streams between the two.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            if not template.endswith("/stream"):  # a stream's duration is not a latency
                self._child(scope["method"], template, status).observe(
                    time.perf_counter() - started
                )

    def _child(self, method: str, template: str, status: int) -> Any:
        key = (method, template, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = HTTP_SECONDS.labels(method, template, str(status))
        return child
