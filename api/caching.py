"""ETag / If-None-Match and freshness headers for JSON responses.

An ETag names a campaign's revision, not a digest of the body: every change to a
campaign's counters or batches bumps `rev` in its stats hash (and an application also
`applied_at_ms`, which tells apart two lives of a hash rebuilt from scratch), so the
revision answers a conditional request without reading or rendering the counters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import msgspec
from fastapi import Response

#: Changes whenever the JSON rendering of a revision changes, so old ETags stop matching.
REPRESENTATION = "1"

#: Compact JSON, keys in insertion order.
encode = msgspec.json.Encoder().encode


@lru_cache(maxsize=4096)  # the same few values on every read of a campaign
def _ms_to_iso(value: str | None) -> str | None:
    if not value:
        return None
    moment = datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def revision_etag(campaign_id: str, fields: Mapping[str, str], variant: str = "") -> str:
    """The strong ETag of a campaign's resource (`variant`: which page) at its revision."""
    source = "\0".join(
        (
            REPRESENTATION,
            campaign_id,
            fields.get("rev", "0"),
            fields.get("applied_at_ms", ""),
            variant,
        )
    )
    return '"' + hashlib.sha256(source.encode()).hexdigest()[:32] + '"'


def cache_headers(etag: str, fields: Mapping[str, str]) -> dict[str, str]:
    """ETag, Cache-Control and the times of the last applied event and of its application."""
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    last_event = _ms_to_iso(fields.get("last_event_ms"))
    if last_event:
        headers["X-Last-Event-At"] = last_event
    applied = _ms_to_iso(fields.get("applied_at_ms"))
    if applied:
        headers["X-Last-Applied-At"] = applied
    return headers


def matches(if_none_match: str | None, etag: str) -> bool:
    """Whether the client already holds the representation named by `etag`."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return etag in {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}


def not_modified(headers: dict[str, str]) -> Response:
    """304 with the representation's headers and no body."""
    return Response(status_code=304, headers=headers)


def json_response(body: Any, headers: dict[str, str]) -> Response:
    """200 with the body as compact JSON (or already encoded)."""
    content = body if isinstance(body, bytes) else encode(body)
    return Response(content, media_type="application/json", headers=headers)
