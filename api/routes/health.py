"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from api.deps import StoreDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(store: StoreDep, response: Response) -> dict[str, str]:
    """Redis answers; 503 otherwise."""
    try:
        await store.client.ping()
    except Exception as exc:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "unavailable", "redis": f"unreachable: {type(exc).__name__}"}
    return {"status": "ready", "redis": "ok"}
