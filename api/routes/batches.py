"""Batches of a campaign with their live counters."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from api.caching import cached_json, freshness_headers
from api.deps import CampaignDep, OrgDep, StoreDep
from api.schemas import Batch, Problem

router = APIRouter(prefix="/api/v1", tags=["batches"])

BatchStatusFilter = Literal["pending", "in_progress", "paused", "completed", "cancelled", "expired"]


@router.get(
    "/campaigns/{campaign_id}/batches",
    response_model=list[Batch],
    responses={
        304: {"description": "Not modified (If-None-Match)"},
        401: {"model": Problem, "description": "Missing, invalid or revoked token"},
        403: {"model": Problem, "description": "organization_id is not the token's"},
        404: {"model": Problem, "description": "No such campaign in your organization"},
        503: {"model": Problem, "description": "The stats store is unavailable"},
    },
)
async def campaign_batches(
    request: Request,
    org: OrgDep,
    store: StoreDep,
    campaign_id: CampaignDep,
    skip: Annotated[int, Query(ge=0, le=10_000_000, description="Batches to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
    batch_status: Annotated[
        BatchStatusFilter | None, Query(alias="status", description="Only this status.")
    ] = None,
    organization_id: Annotated[
        str | None, Query(max_length=128, description="Must be the token's organization.")
    ] = None,
) -> Response:
    """Batches ordered by (created_at, batch_id), batches without created_at last."""
    if organization_id is not None and organization_id != org:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="organization_id does not match the token's organization",
        )
    page = await store.batches(campaign_id, skip=skip, limit=limit, status=batch_status)
    fields = await store.stats_fields(campaign_id)
    return cached_json(request, page, freshness_headers(fields))
