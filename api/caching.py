"""ETag / If-None-Match and freshness headers for JSON responses."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response


def _ms_to_iso(value: str | None) -> str | None:
    if not value:
        return None
    moment = datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def freshness_headers(fields: dict[str, str]) -> dict[str, str]:
    """Time of the last applied event (its occurred_at) and of its application."""
    headers = {}
    last_event = _ms_to_iso(fields.get("last_event_ms"))
    if last_event:
        headers["X-Last-Event-At"] = last_event
    applied = _ms_to_iso(fields.get("applied_at_ms"))
    if applied:
        headers["X-Last-Applied-At"] = applied
    return headers


def cached_json(request: Request, body: Any, headers: dict[str, str]) -> Response:
    """200 with an ETag, or 304 when the client already has this representation."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    etag = '"' + hashlib.sha256(payload).hexdigest()[:32] + '"'
    headers = {**headers, "ETag": etag, "Cache-Control": "no-cache"}
    match = request.headers.get("if-none-match", "")
    if etag in {tag.strip().removeprefix("W/") for tag in match.split(",")} or match == "*":
        return Response(status_code=304, headers=headers)
    return Response(payload, media_type="application/json", headers=headers)
