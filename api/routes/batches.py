"""Batches of a campaign with their live counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, get_args

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from api import reads
from api.caching import (
    cache_headers,
    encode,
    json_response,
    matches,
    not_modified,
    revision_etag,
)
from api.deps import CampaignId, StoreDep, TokenDep, owner_check
from api.pages import Fragments, Pages
from api.schemas import Batch, Problem
from processors.domain.batchstate import unpack_batch
from processors.domain.views import batch_view
from processors.store import keys
from processors.store.client import Store

router = APIRouter(prefix="/api/v1", tags=["batches"])

BatchStatusFilter = Literal["pending", "in_progress", "paused", "completed", "cancelled", "expired"]
BATCH_STATUS_FILTERS: frozenset[str] = frozenset(get_args(BatchStatusFilter))


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
    campaign_id: CampaignId,
    token: TokenDep,
    store: StoreDep,
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
    return await batches_answer(
        store,
        request.app.state.pages,
        request.app.state.fragments,
        token,
        campaign_id,
        request.headers.get("if-none-match"),
        Page(skip, limit, batch_status, organization_id),
    )


@dataclass(frozen=True)
class Page:
    """The query of a batches read."""

    skip: int = 0
    limit: int = 50
    status: str | None = None
    organization_id: str | None = None


def _page_body(fragments: Fragments, campaign_id: str, listed: list[tuple[str, bytes]]) -> bytes:
    """The page's JSON: kept batches as they were rendered, the others rendered from the
    packed state read with the page (and kept under it)."""
    parts = []
    for batch_id, packed in listed:
        body = fragments.get(campaign_id, batch_id, packed)
        if body is None:
            fields = unpack_batch(packed.decode()) if packed else {}
            body = encode(batch_view(campaign_id, batch_id, fields))
            fragments.put(campaign_id, batch_id, packed, body)
        parts.append(body)
    return b"[" + b",".join(parts) + b"]"


async def batches_answer(
    store: Store,
    pages: Pages,
    fragments: Fragments,
    token: str,
    campaign_id: str,
    if_none_match: str | None,
    page: Page,
) -> Response:
    """200 with one page of batches, or 304; HTTPException 401/403/404. Shared with
    `api.readpath`."""
    index = keys.batch_index(campaign_id, page.status)
    # Without a validator to compare, the page is read in the same round trip, after the
    # head: it is of that revision or a later one, so it is never named (nor kept) by a
    # revision older than its own. With one, a 304 needs the head alone.
    ask = None if if_none_match else (index, page.skip, page.limit)
    org, fields, listed = await reads.head_and_page(store, token, campaign_id, ask)
    org = owner_check(org, fields.get("org"))
    if page.organization_id is not None and page.organization_id != org:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="organization_id does not match the token's organization",
        )
    query = f"{page.skip}:{page.limit}:{page.status or ''}"
    etag = revision_etag(campaign_id, fields, f"batches:{query}")
    headers = cache_headers(etag, fields)
    if matches(if_none_match, etag):
        return not_modified(headers)
    body = pages.get(campaign_id, query, etag)
    if body is None:
        if listed is None:  # read after the head, as above
            listed = await reads.batch_page(store, campaign_id, index, page.skip, page.limit)
        body = _page_body(fragments, campaign_id, listed)
        pages.put(campaign_id, query, etag, body)
    return json_response(body, headers)
