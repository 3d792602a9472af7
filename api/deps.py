"""Dependencies: settings, the store, the caller's organization, campaign access."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from processors.store.client import Store

_bearer = HTTPBearer(auto_error=False, description="A `gat_…` token of your organization.")

CAMPAIGN_NOT_FOUND = "Campaign not found"


async def get_store(request: Request) -> Store:
    """The store opened by the lifespan (async: a plain function would run in a thread)."""
    store: Store = request.app.state.store
    return store


StoreDep = Annotated[Store, Depends(get_store)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def current_org(
    store: StoreDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The organization of the bearer token; 401 when missing, malformed or unknown."""
    if credentials is None:
        raise _unauthorized("Not authenticated: send Authorization: Bearer gat_<token>")
    return await _token_org(store, credentials.credentials)


async def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The bearer token, well formed but not looked up yet (the read path looks it up in
    the same round trip as the campaign); 401 when missing or malformed."""
    if credentials is None:
        raise _unauthorized("Not authenticated: send Authorization: Bearer gat_<token>")
    return _well_formed(credentials.credentials)


TokenDep = Annotated[str, Depends(bearer_token)]


def owner_check(token_org: str | None, campaign_org: str | None) -> str:
    """The caller's organization when the campaign is theirs: 401 for an unknown token,
    else 404 for a campaign of another organization or none."""
    if token_org is None:
        raise _unauthorized("Invalid or revoked token")
    if campaign_org != token_org:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=CAMPAIGN_NOT_FOUND)
    return token_org


def presented_token(authorization: str | None, access_token: str | None) -> str:
    """The bearer token from the header, else from the query parameter (streams); or 401."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if access_token:
        return access_token
    raise _unauthorized("Not authenticated: send Authorization: Bearer gat_<token>")


async def authenticate(store: Store, token: str) -> str:
    """Like `current_org`, for a token taken by `presented_token`."""
    return await _token_org(store, token)


def _well_formed(token: str) -> str:
    if not token.startswith("gat_") or len(token) > 256:
        raise _unauthorized("Invalid token: expected a gat_ token")
    return token


async def _token_org(store: Store, token: str) -> str:
    org = await store.token_org(_well_formed(token))
    if org is None:
        raise _unauthorized("Invalid or revoked token")
    return org


OrgDep = Annotated[str, Depends(current_org)]

CampaignId = Annotated[str, Path(min_length=1, max_length=128, description="The campaign id.")]


async def owned_campaign(campaign_id: CampaignId, org: OrgDep, store: StoreDep) -> str:
    """The campaign id, when it exists and belongs to the caller; else 404."""
    if await store.campaign_owner(campaign_id) != org:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=CAMPAIGN_NOT_FOUND)
    return campaign_id


CampaignDep = Annotated[str, Depends(owned_campaign)]
