"""What the API tests share: the app served over ASGI, a token's header, a frozen clock, a
store on real valkey seeded with random campaigns."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import ModuleType

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from api.main import create_app
from processors.store.client import Store
from tests.store.test_apply import apply_events
from tests.streams import parsed, random_stream


@asynccontextmanager
async def serve(store: Store, app: FastAPI | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of `app` (a new one by default) reading `store`, over ASGI."""
    app = app if app is not None else create_app(store=store)
    app.state.store = store
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def auth(store: Store, org: str) -> dict[str, str]:
    """The Authorization header of a new token of `org`."""
    return {"Authorization": f"Bearer {await store.create_token(org)}"}


def freeze_clock(monkeypatch: pytest.MonkeyPatch, route: ModuleType) -> int:
    """The clock of a route module (`now_ms`), frozen at now; the store keeps its own."""
    frozen = int(datetime.now(UTC).timestamp() * 1000)
    monkeypatch.setattr(route, "now_ms", lambda: frozen)
    return frozen


@asynccontextmanager
async def seeded_valkey(url: str, *, seed: int, campaigns: int, size: int) -> AsyncIterator[Store]:
    """A store on an emptied real valkey holding a random stream of `campaigns` campaigns."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    await client.flushall()
    store = Store(client)
    try:
        events = random_stream(random.Random(seed), campaigns=campaigns, size=size)
        await apply_events(store, [("t", 0, n, parsed(e)) for n, e in enumerate(events)])
        yield store
    finally:
        await store.close()
