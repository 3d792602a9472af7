"""Prometheus metrics of the API: request latency by route, and the /metrics endpoint."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest

HTTP_SECONDS = Histogram(
    "dialer_stats_http_request_seconds",
    "HTTP request latency by route and status code.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def metrics() -> Response:
    """Prometheus exposition."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def observe(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Middleware: time every request under its route template, not its raw path."""
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    template = getattr(route, "path", "unmatched")
    if not template.endswith("/stream"):  # a stream's duration is not a latency
        HTTP_SECONDS.labels(request.method, template, str(response.status_code)).observe(
            time.perf_counter() - started
        )
    return response
