"""The live dashboard: static HTML and JS served by the API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/dashboard")
async def dashboard() -> FileResponse:
    """The dashboard page."""
    return FileResponse(STATIC / "dashboard.html", media_type="text/html")


@router.get("/dashboard/app.js")
async def dashboard_js() -> FileResponse:
    """The dashboard script."""
    return FileResponse(STATIC / "app.js", media_type="text/javascript")


@router.get("/")
async def index() -> FileResponse:
    """The dashboard, at the root too."""
    return FileResponse(STATIC / "dashboard.html", media_type="text/html")
