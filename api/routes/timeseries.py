"""Call records by event time: a campaign's time series, and the `window` of its stats."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError

from api import reads
from api.caching import cache_headers, json_response, matches, not_modified, revision_etag
from api.deps import CampaignId, StoreDep, TokenDep, owner_check
from api.schemas import Problem, Timeseries
from processors.domain.timeseries import (
    WINDOW_PATTERN,
    IntervalName,
    TimeWindowError,
    plan,
    series_csv,
    series_view,
    window_minutes,
    window_range,
    window_view,
)
from processors.domain.views import stats_view
from processors.store.client import Store

router = APIRouter(prefix="/api/v1", tags=["timeseries"])

#: Bumped whenever the rendering of a series or a window changes: old ETags stop matching.
_RENDERING = "1"

WindowQuery = Annotated[
    str | None,
    Query(
        description="Add `window`: call records whose occurred_at lies in the last N minutes"
        " (1m ... 24h, like `15m` or `2h`), counted by minute: the current minute and the"
        " N - 1 before it.",
        examples=["15m"],
        json_schema_extra={"pattern": WINDOW_PATTERN},  # checked by window_minutes
    ),
]


def now_ms() -> int:
    """The API's clock, in ms since the epoch."""
    return time.time_ns() // 1_000_000


def unprocessable(error: TimeWindowError, query: dict[str, str | None]) -> RequestValidationError:
    """422 in FastAPI's own shape, as for any other invalid query value."""
    return RequestValidationError(
        [
            {
                "type": "value_error",
                "loc": ("query", error.param),
                "msg": str(error),
                "input": query.get(error.param),
            }
        ]
    )


@router.get(
    "/campaigns/{campaign_id}/timeseries",
    response_model=Timeseries,
    responses={
        200: {
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "start,completed,failed,busy,no_answer,follow_up_calls,attempts,"
                    "connect_rate,talk_seconds,avg_talk_seconds\r\n"
                    "2026-03-29T00:00:00+01:00,3,1,0,1,0,5,0.6,412.5,137.5\r\n",
                }
            },
            "description": "The series: JSON, or CSV with `Accept: text/csv` (a header row,"
            " then one row per point; null figures are empty fields).",
        },
        304: {"description": "Not modified (If-None-Match)"},
        401: {"model": Problem, "description": "Missing, invalid or revoked token"},
        404: {"model": Problem, "description": "No such campaign in your organization"},
        503: {"model": Problem, "description": "The stats store is unavailable"},
    },
)
async def campaign_timeseries(
    request: Request,
    campaign_id: CampaignId,
    token: TokenDep,
    store: StoreDep,
    interval: Annotated[
        IntervalName,
        Query(description="Point length; 1m and 5m are kept 48 hours, 15m, 1h and 1d 400 days."),
    ],
    start: Annotated[
        str | None,
        Query(
            alias="from",
            description="ISO 8601; floored to the interval in `tz` (1d: local midnight)."
            " A time without offset, or a date, is read in `tz`. Default: 24 hours before `to`.",
            examples=["2026-03-29T00:00:00+01:00"],
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            alias="to",
            description="ISO 8601, exclusive (the bucket containing it counts whole)."
            " Default: now.",
        ),
    ] = None,
    tz: Annotated[
        str,
        Query(description="IANA time zone of the points' starts.", examples=["Europe/Paris"]),
    ] = "UTC",
) -> Response:
    """Call records by their own occurred_at: one point per interval, zeros included.

    Points start on multiples of the interval in local time (1d at local midnight, so a day
    across a DST change is 23 or 25 hours). Exact like the counters: a duplicate changes
    nothing, and a corrected call record leaves its old point for its new one.

    422 for an unknown interval or time zone, `from` not before `to`, `from` older than the
    interval's retention, or more than 1,500 points.

    With `Accept: text/csv`, the same points as CSV, for spreadsheets.
    """
    org, fields = await reads.head(store, token, campaign_id)
    owner_check(org, fields.get("org"))
    try:
        series = plan(interval, start, end, tz, now_ms())
    except TimeWindowError as error:
        raise unprocessable(error, {"from": start, "to": end, "tz": tz}) from None
    first = series.starts[0]
    as_csv = wants_csv(request.headers.get("accept"))
    variant = f"timeseries{_RENDERING}:{interval}:{series.zone.key}:{first}:{series.until_ms}"
    if as_csv:
        variant += ":csv"
    # The revision is read before the buckets: a body is never named by an older revision
    # than its own, so a 304 never keeps a client on a series that has since changed.
    etag = revision_etag(campaign_id, fields, variant)
    headers = {**cache_headers(etag, fields), "Vary": "Accept"}
    if matches(request.headers.get("if-none-match"), etag):
        return not_modified(headers)
    buckets = await store.series(campaign_id, series.interval.resolution, first, series.until_ms)
    view = series_view(campaign_id, series, buckets)
    if as_csv:
        return Response(series_csv(view), media_type="text/csv; charset=utf-8", headers=headers)
    return json_response(view, headers)


def wants_csv(accept: str | None) -> bool:
    """Whether the Accept header prefers CSV to JSON: each is given the quality of its most
    specific match (`text/csv`, then `text/*`, then `*/*`; `application/json`,
    `application/*`, `*/*`); CSV wins on a higher quality, or on the same one when it was
    named more specifically or earlier. No header, or `*/*` alone, means JSON."""
    best: dict[str, tuple[int, float, int]] = {}  # kind -> (specificity, quality, position)
    for position, item in enumerate((accept or "").split(",")):
        media, *params = (part.strip().lower() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = -1.0
        if not 0.0 <= quality <= 1.0:
            continue  # not a quality value: the entry is ignored
        for kind, ranks in _ACCEPTED.items():
            specificity = ranks.get(media)
            if specificity is not None and specificity > best.get(kind, (-1, 0.0, 0))[0]:
                best[kind] = (specificity, quality, position)
    csv, json = best.get("csv"), best.get("json")
    if csv is None or csv[1] == 0:
        return False
    if json is None or json[1] == 0:
        return True
    if csv[1] != json[1]:
        return csv[1] > json[1]
    return (csv[0], -csv[2]) > (json[0], -json[2])


#: Per kind, the media ranges that match it and how specific each is.
_ACCEPTED = {
    "csv": {"text/csv": 2, "text/*": 1, "*/*": 0},
    "json": {"application/json": 2, "application/*": 1, "*/*": 0},
}


async def windowed_stats_answer(
    store: Store, token: str, campaign_id: str, if_none_match: str | None, window: str
) -> Response:
    """The stats with their `window` (`GET /campaigns/{id}/stats?window=15m`), or 304;
    HTTPException 401/404/422."""
    org, fields = await reads.stats(store, token, campaign_id)
    owner_check(org, fields.get("org"))
    try:
        minutes = window_minutes(window)
    except TimeWindowError as error:
        raise unprocessable(error, {"window": window}) from None
    now = now_ms()
    start, end = window_range(minutes, now)
    etag = revision_etag(campaign_id, fields, f"window{_RENDERING}:{minutes}:{start}")
    headers = cache_headers(etag, fields)
    if matches(if_none_match, etag):
        return not_modified(headers)
    buckets = await store.series(campaign_id, "m", start, end)
    body = {**stats_view(campaign_id, fields), "window": window_view(minutes, now, buckets)}
    return json_response(body, headers)
