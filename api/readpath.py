"""The hot reads answered in front of FastAPI's routing: GET stats and batches, 200 or 304.

Per request, FastAPI's routing, dependency solving and exception layers cost more than
the read itself (issue 14's profile). This middleware answers the well-formed requests of
the two read routes by calling the functions those routes call (`stats_answer`,
`batches_answer`), and hands every other request to FastAPI untouched: a missing,
malformed, unknown or revoked token, another tenant's campaign, a query it does not read
exactly as FastAPI would. So every error answer still comes from the routes, and the
routes remain the endpoints' definition and their OpenAPI.
"""

from __future__ import annotations

import re

from fastapi import FastAPI, HTTPException, Response
from fastapi.routing import APIRoute, APIRouter
from fastapi.security.utils import get_authorization_scheme_param
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import store_unavailable
from api.routes import batches, stats
from processors import StoreUnavailable

PREFIX = "/api/v1/campaigns/"

#: Query values taken as they are; anything else (percent-encoded, signs, spaces) is
#: left to FastAPI's parsing.
_PLAIN = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_DIGITS = re.compile(r"[0-9]{1,8}")


def _route(router: APIRouter, path: str) -> APIRoute:
    for route in router.routes:
        if isinstance(route, APIRoute) and route.path == path:
            return route
    raise LookupError(path)


STATS_ROUTE = _route(stats.router, "/api/v1/campaigns/{campaign_id}/stats")
BATCHES_ROUTE = _route(batches.router, "/api/v1/campaigns/{campaign_id}/batches")


class ReadPath:
    """ASGI middleware answering the reads it can answer exactly as the routes would."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"].startswith(PREFIX)
            and not scope.get("root_path")
        ):
            answer = await self._answer(scope)
            if answer is not None:
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope) -> Response | None:
        campaign_id, _, resource = scope["path"][len(PREFIX) :].partition("/")
        if not 1 <= len(campaign_id) <= 128 or resource not in ("stats", "batches"):
            return None
        authorization = if_none_match = None
        for name, value in scope["headers"]:
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif name == b"if-none-match" and if_none_match is None:
                if_none_match = value.decode("latin-1")
        token = _bearer(authorization)
        if token is None:
            return None
        store = self.api.state.store
        try:
            if resource == "stats":
                if scope["query_string"]:
                    return None
                scope["route"] = STATS_ROUTE
                return await stats.stats_answer(store, token, campaign_id, if_none_match)
            page = _page(scope["query_string"])
            if page is None:
                return None
            scope["route"] = BATCHES_ROUTE
            state = self.api.state
            return await batches.batches_answer(
                store, state.pages, state.fragments, token, campaign_id, if_none_match, page
            )
        except HTTPException:
            scope.pop("route", None)
            return None  # the route answers it, and the same way
        except (RedisError, StoreUnavailable):
            return store_unavailable()


def _bearer(authorization: str | None) -> str | None:
    """The token as `HTTPBearer` and `deps.bearer_token` take it, when well formed."""
    scheme, token = get_authorization_scheme_param(authorization)
    if scheme.lower() != "bearer" or not token.startswith("gat_") or len(token) > 256:
        return None
    return token


def _page(query: bytes) -> batches.Page | None:
    """skip, limit, status and organization_id when each is plain and valid, else None."""
    values: dict[str, str] = {}
    if query:
        try:
            text = query.decode("ascii")
        except UnicodeDecodeError:
            return None
        for part in text.split("&"):
            name, equals, value = part.partition("=")
            if not equals or name in values or not _PLAIN.fullmatch(value):
                return None
            values[name] = value
    skip, limit = values.pop("skip", "0"), values.pop("limit", "50")
    status = values.pop("status", None)
    organization_id = values.pop("organization_id", None)
    if values or not _DIGITS.fullmatch(skip) or not _DIGITS.fullmatch(limit):
        return None
    if int(skip) > 10_000_000 or not 1 <= int(limit) <= 500:
        return None
    if status is not None and status not in batches.BATCH_STATUS_FILTERS:
        return None
    return batches.Page(int(skip), int(limit), status, organization_id)
