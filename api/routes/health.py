"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status

from api.deps import StoreDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(store: StoreDep, request: Request, response: Response) -> dict[str, Any]:
    """Redis answers (else 503); the workers' consumer lag and the partitions they are stuck
    on (a batch they cannot decode, retried with backoff), as they last reported them."""
    try:
        await store.client.ping()
        lag = await store.lag()
        stuck = await store.stuck()
    except Exception as exc:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "unavailable", "redis": f"unreachable: {type(exc).__name__}"}
    total = sum(lag.values())
    return {
        "status": "ready",
        "redis": "ok",
        "consumer_lag": total,
        "consumer_lag_by_partition": lag,
        "lagging": total > request.app.state.ready_max_lag,
        "stuck_partitions": stuck,
    }
