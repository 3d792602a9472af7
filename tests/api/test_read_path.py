"""The read path as Redis sees it (MONITOR on real valkey): a read is one round trip, a 304
reads the head of the stats hash and never a counter; and the read path in front of
FastAPI answers exactly as the routes behind it do."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from api.main import create_app
from api.metrics import ObserveRequests
from processors.store import keys
from processors.store.client import Store
from processors.tools.embedded import Valkey
from tests.api.serving import seeded_valkey, serve
from tests.store.test_apply import apply_events
from tests.streams import entity_event, parsed

#: The fields of the stats hash that are not counters.
NOT_COUNTERS = {"org", "rev", "applied_at_ms", "last_event_ms"}


@pytest.fixture
async def store(valkey_server: Valkey) -> AsyncIterator[Store]:
    """A store on real valkey (MONITOR is what these tests observe) with three campaigns."""
    async with seeded_valkey(valkey_server.url, seed=7, campaigns=3, size=300) as store:
        yield store


@pytest.fixture
async def http(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(store) as client:
        yield client


async def commands_during(
    store: Store, url: str, action: Callable[[], Awaitable[httpx.Response]]
) -> tuple[httpx.Response, list[list[str]]]:
    """The response of `action` and every command valkey executed meanwhile, as words."""
    watcher = aioredis.Redis.from_url(url, decode_responses=True)
    marker = f"end-of-request-{uuid.uuid4().hex}"
    try:
        async with watcher.monitor() as monitor:  # monitoring once this returns
            response = await action()
            await store.client.echo(marker)
            seen: list[list[str]] = []
            while True:
                info = await asyncio.wait_for(monitor.next_command(), timeout=10)
                if marker in info["command"]:
                    return response, seen
                seen.append(info["command"].split(" "))
    finally:
        await watcher.aclose()


def counter_reads(commands: list[list[str]], campaign_id: str) -> list[list[str]]:
    """The commands that read anything of the campaign but the stats hash's head."""
    reads = []
    for command in commands:
        name, key, *fields = command
        if f"{{{campaign_id}}}" not in key:
            continue
        head_only = set(fields) <= NOT_COUNTERS and name.upper() in ("HGET", "HMGET")
        if key == keys.stats(campaign_id) and head_only:
            continue
        reads.append(command)
    return reads


async def test_a_304_reads_the_revision_and_no_counter(
    http: httpx.AsyncClient, store: Store, valkey_server: Valkey
) -> None:
    """With a matching If-None-Match, stats and batches answer 304 after one round trip of
    two commands (the token, the head of the stats hash): no counter, no batch is read."""
    headers = {"Authorization": f"Bearer {await store.create_token('org_0')}"}
    for path in ("/api/v1/campaigns/cmp_0/stats", "/api/v1/campaigns/cmp_0/batches?limit=5"):
        full, commands = await commands_during(
            store, valkey_server.url, lambda p=path: http.get(p, headers=headers)
        )
        assert full.status_code == 200
        assert counter_reads(commands, "cmp_0"), commands  # a 200 reads counters: seen here
        conditional = {**headers, "If-None-Match": full.headers["etag"]}
        response, commands = await commands_during(
            store, valkey_server.url, lambda p=path, h=conditional: http.get(p, headers=h)
        )
        assert response.status_code == 304 and response.content == b""
        assert response.headers["etag"] == full.headers["etag"]
        assert response.headers["x-last-event-at"] == full.headers["x-last-event-at"]
        assert counter_reads(commands, "cmp_0") == [], commands
        assert [c[0].upper() for c in commands] == ["HGET", "HMGET"], commands


async def test_a_read_is_one_round_trip_of_two_commands(
    http: httpx.AsyncClient, store: Store, valkey_server: Valkey
) -> None:
    """A stats read is the token and the stats hash, pipelined: two commands in all."""
    headers = {"Authorization": f"Bearer {await store.create_token('org_0')}"}
    response, commands = await commands_during(
        store, valkey_server.url, lambda: http.get("/api/v1/campaigns/cmp_0/stats", headers=headers)
    )
    assert response.status_code == 200
    assert [c[:2] for c in commands] == [
        ["HGET", keys.TOKENS],
        ["HGETALL", keys.stats("cmp_0")],
    ]


async def test_a_change_ends_the_304s(http: httpx.AsyncClient, store: Store) -> None:
    """Any change to the campaign names a new revision: the old ETag gets a 200 with the
    new counters, for stats and for every page of batches."""
    headers = {"Authorization": f"Bearer {await store.create_token('org_0')}"}
    paths = ["/api/v1/campaigns/cmp_0/stats", "/api/v1/campaigns/cmp_0/batches?limit=3"]
    before = {p: await http.get(p, headers=headers) for p in paths}
    event = parsed(entity_event("cmp_0", "org_0", "contact", 4242, 1))
    await apply_events(store, [("t", 1, 0, event)])
    for path, old in before.items():
        again = await http.get(path, headers={**headers, "If-None-Match": old.headers["etag"]})
        assert again.status_code == 200 and again.headers["etag"] != old.headers["etag"]
    stats = await http.get(paths[0], headers=headers)
    assert stats.json()["contact_counts"] != before[paths[0]].json()["contact_counts"]


def without_read_path(store: Store) -> Any:
    """The same app with FastAPI's routes answering everything."""
    app = create_app(store=store)
    app.state.store = store
    app.front = ObserveRequests(partial(FastAPI.__call__, app))
    return app


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/campaigns/cmp_0/stats",
        "/api/v1/campaigns/cmp_0/batches",
        "/api/v1/campaigns/cmp_0/batches?skip=1&limit=2",
        "/api/v1/campaigns/cmp_0/batches?status=paused&organization_id=org_0",
        "/api/v1/campaigns/cmp_0/batches?limit=500&skip=0",
        "/api/v1/campaigns/cmp_0/batches?organization_id=org_1",
        "/api/v1/campaigns/cmp_0/batches?limit=501",
        "/api/v1/campaigns/cmp_1/stats",
        "/api/v1/campaigns/cmp_nope/batches",
    ],
)
async def test_the_read_path_answers_as_the_routes(
    http: httpx.AsyncClient, store: Store, path: str
) -> None:
    """Status, body and headers are the same with and without the read path in front:
    with and without If-None-Match, with a valid, an unknown, a foreign or no token."""
    token = await store.create_token("org_0")
    routes = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=without_read_path(store)), base_url="http://t"
    )
    async with routes:
        for extra in ({}, {"If-None-Match": "*"}, {"If-None-Match": '"nope", W/"x"'}):
            for authorization in (f"Bearer {token}", "Bearer gat_unknown", "Basic Zm9v", None):
                headers = {"Authorization": authorization, **extra} if authorization else extra
                fast = await http.get(path, headers=headers)
                slow = await routes.get(path, headers=headers)
                assert (fast.status_code, fast.content) == (slow.status_code, slow.content)
                assert dict(fast.headers) == dict(slow.headers)


async def test_a_page_is_read_once_per_revision(
    http: httpx.AsyncClient, store: Store, valkey_server: Valkey
) -> None:
    """A page is one script call that lists the batches with their states, nothing more:
    the same at a second read of the same revision and after a change to one batch, which
    the page then shows."""
    headers = {"Authorization": f"Bearer {await store.create_token('org_0')}"}
    path = "/api/v1/campaigns/cmp_0/batches?limit=500"
    first = await http.get(path, headers=headers)
    again, commands = await commands_during(
        store, valkey_server.url, lambda: http.get(path, headers=headers)
    )
    assert (again.status_code, again.content) == (200, first.content)
    names = {c[0].upper() for c in commands}
    assert names == {"HGET", "HMGET", "EVALSHA", "ZRANGE"}, commands
    assert first.json() == await store.batches("cmp_0", limit=500)
    batch_id = first.json()[0]["batch_id"]
    event = entity_event("cmp_0", "org_0", "contact", 4343, 1)
    event["batch_id"] = batch_id
    await apply_events(store, [("t", 1, 0, parsed(event))])
    changed, commands = await commands_during(
        store, valkey_server.url, lambda: http.get(path, headers=headers)
    )
    assert changed.json() == await store.batches("cmp_0", limit=500) != first.json()
    assert {c[0].upper() for c in commands} == names, commands
