"""The FastAPI application: `create_app(settings)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from api import metrics
from api.errors import store_unavailable
from api.live import Updates
from api.pages import Fragments, Pages
from api.pool import api_client
from api.readpath import ReadPath
from api.rollup import Rollups
from api.routes import (
    batches,
    dashboard,
    health,
    progress,
    reconciliation,
    stats,
    stream,
    timeseries,
)
from processors import StoreUnavailable
from processors.settings import Settings
from processors.store.client import Store


class DialerStatsAPI(FastAPI):
    """FastAPI with the request metrics and the read path in front of its own layers.

    Every HTTP request is timed by `ObserveRequests`; the reads `ReadPath` answers never
    enter FastAPI's stack (telemetry, body limit, error and exception layers, routing),
    which costs about a tenth of a 304 (issue 14's profile). Everything else does.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.front: ASGIApp = metrics.ObserveRequests(ReadPath(super().__call__, api=self))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """The API for the given settings (or an already opened store, in tests)."""

    config = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = store is None
        app.state.store = store or Store(api_client(config))
        app.state.updates = Updates(app.state.store)
        app.state.updates.start()
        try:
            yield
        finally:
            await app.state.updates.stop()
            if own:
                await app.state.store.close()

    app = DialerStatsAPI(
        title="dialer-stats",
        version="0.1.0",
        summary="Live, exact campaign and batch statistics for an outbound AI call dialer.",
        lifespan=lifespan,
    )
    app.state.heartbeat_seconds = config.stream_heartbeat_seconds
    app.state.pages = Pages()
    app.state.fragments = Fragments()
    app.state.rollups = Rollups()
    app.state.ready_max_lag = config.ready_max_lag
    app.include_router(stats.router)
    app.include_router(stream.router)
    app.include_router(batches.router)
    app.include_router(progress.router)
    app.include_router(timeseries.router)
    app.include_router(reconciliation.router)
    app.include_router(health.router)
    app.include_router(dashboard.router)
    app.include_router(metrics.router)

    @app.exception_handler(RedisError)
    @app.exception_handler(StoreUnavailable)
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return store_unavailable()

    return app
