"""How far a batch is, and when it will be done."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status

from api import reads
from api.caching import json_response
from api.deps import CampaignId, StoreDep, TokenDep, owner_check
from api.routes.timeseries import now_ms
from api.schemas import BatchProgress, Problem
from processors.domain.views import progress_minutes, progress_view

router = APIRouter(prefix="/api/v1", tags=["batches"])

BATCH_NOT_FOUND = "Batch not found"
BatchId = Annotated[str, Path(min_length=1, max_length=128, description="The batch id.")]


@router.get(
    "/campaigns/{campaign_id}/batches/{batch_id}/progress",
    response_model=BatchProgress,
    responses={
        401: {"model": Problem, "description": "Missing, invalid or revoked token"},
        404: {"model": Problem, "description": "No such campaign in your organization, or"
              " no such batch in it"},
        503: {"model": Problem, "description": "The stats store is unavailable"},
    },
)  # fmt: skip
async def batch_progress(
    campaign_id: CampaignId, batch_id: BatchId, token: TokenDep, store: StoreDep
) -> Response:
    """Terminal contacts of the batch, the rate at which contacts became terminal over the
    last 15 minutes of event time, and the ETA at that rate (null when the rate is 0 or
    the batch is done). Not cached: the rate moves with the clock."""
    org, fields = await reads.head(store, token, campaign_id)
    owner_check(org, fields.get("org"))
    now = now_ms()
    batch, became_terminal = await reads.batch_progress(
        store, campaign_id, batch_id, progress_minutes(now)
    )
    if not batch:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=BATCH_NOT_FOUND)
    body = progress_view(batch_id, batch, became_terminal, now)
    return json_response(body, {"Cache-Control": "no-store"})
