"""Campaign statistics."""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Request, Response

from api import reads
from api.caching import (
    cache_headers,
    encode,
    json_response,
    matches,
    not_modified,
    revision_etag,
)
from api.deps import CampaignId, OrgDep, StoreDep, TokenDep, owner_check
from api.rollup import Rollups
from api.routes.timeseries import WindowQuery, now_ms, unprocessable, windowed_stats_answer
from api.schemas import CampaignList, CampaignStats, OrgStats, Problem
from processors.domain.timeseries import TimeWindowError, window_minutes
from processors.domain.views import stats_view
from processors.store.client import Store

router = APIRouter(prefix="/api/v1", tags=["stats"])

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Missing, invalid or revoked token"},
    404: {"model": Problem, "description": "No such campaign in your organization"},
    503: {"model": Problem, "description": "The stats store is unavailable"},
}


@router.get("/campaigns", response_model=CampaignList, responses=_ERRORS)
async def list_campaigns(org: OrgDep, store: StoreDep) -> CampaignList:
    """Campaigns of the token's organization that have statistics."""
    return CampaignList(organization_id=org, campaigns=await store.org_campaigns(org))


@router.get(
    "/stats",
    response_model=OrgStats,
    responses={
        401: _ERRORS[401],
        503: _ERRORS[503],
        304: {"description": "Not modified (If-None-Match)"},
    },
)
async def organization_stats(
    request: Request, token: TokenDep, store: StoreDep, window: WindowQuery = None
) -> Response:
    """Every campaign of the token's organization summed: the campaign stats body over
    all of them, with `organization_id` and how many `campaigns`. Exact like the campaign
    stats; `?window=` and ETag / If-None-Match as on the campaign route."""
    rollups: Rollups = request.app.state.rollups
    org, life, total = await rollups.head(store, token)
    org = owner_check(org, org)  # 401 for an unknown token
    minutes = None
    now = now_ms()
    if window is not None:
        try:
            minutes = window_minutes(window)
        except TimeWindowError as error:
            raise unprocessable(error, {"window": window}) from None
    body = encode(await rollups.body(store, org, life, total, minutes, now))
    # Named by its content: a change no worker announced (a hand edit, caught by the next
    # full read) moves the ETag too. Kept in process, so a 304 reads no campaign.
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if matches(request.headers.get("if-none-match"), etag):
        return not_modified(headers)
    return json_response(body, headers)


@router.get(
    "/campaigns/{campaign_id}/stats",
    response_model=CampaignStats,
    responses={**_ERRORS, 304: {"description": "Not modified (If-None-Match)"}},
)
async def campaign_stats(
    request: Request,
    campaign_id: CampaignId,
    token: TokenDep,
    store: StoreDep,
    window: WindowQuery = None,
) -> Response:
    """Live statistics of one campaign, read in O(1)."""
    if_none_match = request.headers.get("if-none-match")
    if window is not None:
        return await windowed_stats_answer(store, token, campaign_id, if_none_match, window)
    return await stats_answer(store, token, campaign_id, if_none_match)


async def stats_answer(
    store: Store, token: str, campaign_id: str, if_none_match: str | None
) -> Response:
    """200 with the stats, or 304; HTTPException 401/404. Shared with `api.readpath`."""
    if if_none_match:
        # The revision alone answers a client that has it: no counter is read.
        org, fields = await reads.head(store, token, campaign_id)
        owner_check(org, fields.get("org"))
        etag = revision_etag(campaign_id, fields)
        if matches(if_none_match, etag):
            return not_modified(cache_headers(etag, fields))
        fields = await store.stats_fields(campaign_id)
    else:
        org, fields = await reads.stats(store, token, campaign_id)
        owner_check(org, fields.get("org"))
    # The revision read with the counters names them (one HGETALL: they cannot disagree).
    etag = revision_etag(campaign_id, fields)
    headers = cache_headers(etag, fields)
    if matches(if_none_match, etag):
        return not_modified(headers)
    return json_response(stats_view(campaign_id, fields), headers)
