"""The last reconciliation report of a campaign."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, status

from api.deps import CampaignDep, StoreDep
from api.schemas import Problem
from processors.store import keys

router = APIRouter(prefix="/api/v1", tags=["reconciliation"])


@router.get(
    "/campaigns/{campaign_id}/reconciliation",
    responses={
        401: {"model": Problem, "description": "Missing, invalid or revoked token"},
        404: {"model": Problem, "description": "No such campaign, or no report yet"},
        503: {"model": Problem, "description": "The stats store is unavailable"},
    },
)
async def last_reconciliation(campaign_id: CampaignDep, store: StoreDep) -> dict[str, Any]:
    """The last reconciliation report: drift found per entity kind and field, and repairs."""
    raw = await store.client.get(keys.reconciliation(campaign_id))
    if raw is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail="No reconciliation report for this campaign yet"
        )
    report: dict[str, Any] = json.loads(raw)
    return report
