"""The answer to a read when Redis does not answer."""

from __future__ import annotations

from fastapi.responses import JSONResponse


def store_unavailable() -> JSONResponse:
    """503 with a clear detail and Retry-After: never zeros for a store that is down."""
    return JSONResponse(
        {"detail": "Stats store unavailable: Redis did not answer; retry shortly"},
        status_code=503,
        headers={"Retry-After": "1"},
    )
