"""Campaign statistics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.caching import cached_json, freshness_headers
from api.deps import CampaignDep, OrgDep, StoreDep
from api.schemas import CampaignList, CampaignStats, Problem
from processors.domain.views import stats_view

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
    "/campaigns/{campaign_id}/stats",
    response_model=CampaignStats,
    responses={**_ERRORS, 304: {"description": "Not modified (If-None-Match)"}},
)
async def campaign_stats(request: Request, campaign_id: CampaignDep, store: StoreDep) -> Response:
    """Live statistics of one campaign, read in O(1)."""
    fields = await store.stats_fields(campaign_id)
    return cached_json(request, stats_view(campaign_id, fields), freshness_headers(fields))
