"""The live dashboard: static HTML and JS served by the API, with its vendored chart library."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parent.parent / "static"

#: The vendored files (see static/vendor/README.md) by name, with their media types; the
#: page names them with their version, so a browser may keep them for a day.
VENDOR = {
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "uPlot.LICENSE": "text/plain",
}

router = APIRouter(include_in_schema=False)


@router.get("/dashboard")
async def dashboard() -> FileResponse:
    """The dashboard page."""
    return FileResponse(STATIC / "dashboard.html", media_type="text/html")


@router.get("/dashboard/app.js")
async def dashboard_js() -> FileResponse:
    """The dashboard script."""
    return FileResponse(STATIC / "app.js", media_type="text/javascript")


@router.get("/dashboard/vendor/{name}")
async def vendored(name: str) -> FileResponse:
    """A vendored library file; nothing else under static/ is served by name."""
    media_type = VENDOR.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Not found")
    return FileResponse(
        STATIC / "vendor" / name,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.get("/")
async def index() -> FileResponse:
    """The dashboard, at the root too."""
    return FileResponse(STATIC / "dashboard.html", media_type="text/html")
