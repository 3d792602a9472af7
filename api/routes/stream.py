"""Server-Sent Events: a snapshot of a campaign's stats, then an update on every change."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse

from api.deps import CAMPAIGN_NOT_FOUND, CampaignId, StoreDep, authenticate, presented_token
from api.live import Updates
from api.routes.timeseries import now_ms, unprocessable
from api.schemas import Problem
from processors.domain.timeseries import (
    WINDOW_PATTERN,
    TimeWindowError,
    window_minutes,
    window_range,
    window_view,
)
from processors.domain.views import stats_view
from processors.store.client import Store

router = APIRouter(prefix="/api/v1", tags=["stream"])

#: At most this many updates per second per client: bursts are coalesced.
MAX_RATE = 10.0

#: The last event of a stream whose token was revoked; EventSource then reconnects and
#: gets a 401, which ends it for good.
REVOKED = 'event: revoked\ndata: {"detail":"Invalid or revoked token"}\n\n'


def _window_start(minutes: int | None) -> int | None:
    """Where a window of `minutes` starts now (ms), None without a window."""
    return None if minutes is None else window_range(minutes, now_ms())[0]


async def _render(
    cache: Rendered,
    store: Store,
    campaign_id: str,
    revision: int,
    fields: dict[str, str],
    minutes: int | None,
    start: int | None,
) -> str:
    """One SSE event; shared by every stream of the campaign at that revision and window
    position (window figures are read once per revision and minute)."""
    cached = cache.get((campaign_id, minutes))
    if cached is not None and cached[0] == (revision, start):
        return cached[1]
    view = stats_view(campaign_id, fields)
    if minutes is not None and start is not None:
        now = now_ms()
        end = window_range(minutes, now)[1]
        view["window"] = window_view(minutes, now, await store.series(campaign_id, "m", start, end))
    body = json.dumps(view, separators=(",", ":"))
    text = f"id: {revision}\nevent: stats\ndata: {body}\n\n"
    cache[campaign_id, minutes] = ((revision, start), text)
    return text


#: The last rendered event per campaign and window, kept per app: a thousand streams
#: serialize it once.
Rendered = dict[tuple[str, int | None], tuple[tuple[int, int | None], str]]


@router.get(
    "/campaigns/{campaign_id}/stats/stream",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The event stream"},
        401: {"model": Problem, "description": "Missing, invalid or revoked token"},
        404: {"model": Problem, "description": "No such campaign in your organization"},
        503: {"model": Problem, "description": "The stats store is unavailable"},
    },
)
async def stats_stream(
    request: Request,
    campaign_id: CampaignId,
    store: StoreDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    access_token: Annotated[
        str | None,
        Query(description="The token, for clients that cannot send headers (EventSource)."),
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    window: Annotated[
        str | None,
        Query(
            description="Also carry, in each event, the window figures of `GET …/stats?window=`"
            " (1m … 24h); an event is sent on every change and, when the window moved on to a"
            " new minute, at the next heartbeat interval.",
            examples=["15m"],
            json_schema_extra={"pattern": WINDOW_PATTERN},  # checked by window_minutes
        ),
    ] = None,
) -> StreamingResponse:
    """Live stats: `event: stats` with the stats body, `id` = the campaign's revision
    (with `window`, the body also has the window figures, as `GET …/stats?window=`).

    A snapshot first (unless `Last-Event-ID` is the current revision), then one event per
    change, coalesced to at most 10 per second; a comment every 15 s keeps the connection
    open. Reconnecting with `Last-Event-ID` resumes: a client that missed revisions gets
    the current state, which is all it needs. The token is checked again at least once per
    heartbeat interval: a revoked token ends the stream with `event: revoked`.
    """
    token = presented_token(authorization, access_token)
    org = await authenticate(store, token)
    if await store.campaign_owner(campaign_id) != org:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=CAMPAIGN_NOT_FOUND)
    minutes = None
    if window is not None:
        try:
            minutes = window_minutes(window)
        except TimeWindowError as error:
            raise unprocessable(error, {"window": window}) from None
    updates: Updates = request.app.state.updates
    if not hasattr(request.app.state, "rendered"):
        request.app.state.rendered = {}
    rendered: Rendered = request.app.state.rendered
    heartbeat: float = request.app.state.heartbeat_seconds
    try:
        sent = int(last_event_id) if last_event_id else -1
    except ValueError:
        sent = -1

    async def still_valid() -> bool:
        return await store.token_org(token) == org

    async def events() -> AsyncIterator[str]:
        nonlocal sent
        yield "retry: 2000\n\n"
        # a resumed stream at the current revision waits for a change or the next minute
        sent_start = _window_start(minutes)
        async with updates.watch(campaign_id) as changed:
            last_sent_at = 0.0
            checked_at = time.monotonic()
            while True:
                changed.clear()
                fields = updates.latest.get(campaign_id) or await store.stats_fields(campaign_id)
                revision, start = int(fields.get("rev", 0)), _window_start(minutes)
                if revision != sent or start != sent_start:
                    yield await _render(
                        rendered, store, campaign_id, revision, fields, minutes, start
                    )
                    sent, sent_start, last_sent_at = revision, start, time.monotonic()
                timed_out = not await _changed_within(changed, heartbeat)
                # One HGET per heartbeat interval, whether the stream is idle or busy: a
                # revoked token ends the stream within about one heartbeat.
                if timed_out or time.monotonic() - checked_at >= heartbeat:
                    checked_at = time.monotonic()
                    if not await still_valid():
                        yield REVOKED
                        return
                if timed_out:
                    yield ": heartbeat\n\n"
                    continue
                pause = 1 / MAX_RATE - (time.monotonic() - last_sent_at)
                if pause > 0:
                    await asyncio.sleep(pause)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _changed_within(changed: asyncio.Event, seconds: float) -> bool:
    """Whether the campaign changed within `seconds`. (A timeout scope on the stream's
    own task: `wait_for` would start a task per wait, a thousand per update.)"""
    if changed.is_set():
        return True
    try:
        async with asyncio.timeout(seconds):
            await changed.wait()
    except TimeoutError:
        return False
    return True
