"""The push stream in process: a revoked token ends its open streams within a heartbeat."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import api.routes.stream as stream_route
from api.main import create_app
from processors.settings import Settings
from processors.store.client import Store
from tests.conftest import async_wait_until
from tests.store.test_apply import apply_events
from tests.streams import entity_event, parsed, random_stream

HEARTBEAT = 0.5


@pytest.fixture
async def app(store: Store) -> AsyncIterator[Any]:
    """The app with its lifespan running (the updates subscription), one seeded campaign."""
    events = random_stream(random.Random(4), campaigns=1, size=60)
    await apply_events(store, [("t", 0, n, parsed(e)) for n, e in enumerate(events)])
    application = create_app(Settings(stream_heartbeat_seconds=HEARTBEAT), store=store)
    async with application.router.lifespan_context(application):
        yield application


def sse_events(body: str) -> list[dict[str, Any]]:
    """`event` and parsed `data` of every event in a finished stream (comments skipped)."""
    events = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append({"event": fields["event"], "data": json.loads(fields["data"])})
    return events


async def keep_changing(store: Store, stop: asyncio.Event) -> None:
    """A busy campaign: a new contact version applied and announced every 50 ms."""
    version = 1
    while not stop.is_set():
        event = parsed(entity_event("cmp_0", "org_0", "contact", 500, version))
        await apply_events(store, [("t", 1, version, event)])
        await store.announce(["cmp_0"])
        version += 1
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
async def test_a_revoked_token_ends_its_open_stream_within_a_heartbeat(
    app: Any, store: Store, busy: bool
) -> None:
    """The stream re-checks its token each heartbeat interval, idle or busy: after
    `token revoke` it ends with `event: revoked` within about one heartbeat."""
    token = await store.create_token("org_0")
    transport = httpx.ASGITransport(app=app)
    stop = asyncio.Event()
    traffic = asyncio.create_task(keep_changing(store, stop)) if busy else None
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        # ASGITransport hands the response over once the stream has ended
        stream = asyncio.create_task(
            http.get(
                "/api/v1/campaigns/cmp_0/stats/stream",
                headers={"Authorization": f"Bearer {token}"},
            )
        )

        async def open_stream() -> bool:
            return "cmp_0" in app.state.updates._waiters

        await async_wait_until(open_stream, timeout=10, interval=0.02, what="the stream")
        assert not stream.done()
        assert await store.revoke_token(token)
        revoked_at = time.monotonic()
        response = await asyncio.wait_for(stream, timeout=HEARTBEAT * 6)
        elapsed = time.monotonic() - revoked_at
    stop.set()
    if traffic is not None:
        await traffic
    assert response.status_code == 200
    events = sse_events(response.text)
    assert events[0]["event"] == "stats" and events[0]["data"]["campaign_id"] == "cmp_0"
    assert events[-1] == {"event": "revoked", "data": {"detail": "Invalid or revoked token"}}
    assert elapsed < HEARTBEAT * 2, elapsed  # one heartbeat, and some scheduling slack


async def test_a_valid_token_keeps_its_stream(app: Any, store: Store) -> None:
    """The re-check costs one HGET and ends nothing while the token is valid."""
    token = await store.create_token("org_0")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        stream = asyncio.create_task(
            http.get(f"/api/v1/campaigns/cmp_0/stats/stream?access_token={token}")
        )
        deadline = time.monotonic() + HEARTBEAT * 4  # several re-checks
        while time.monotonic() < deadline:
            assert not stream.done(), stream.result().text
            await asyncio.sleep(0.05)
        stream.cancel()


async def test_a_stream_asked_for_a_window_carries_its_figures(app: Any, store: Store) -> None:
    """`?window=15m`: each event has the window figures of the call records of the last 15
    minutes by event time; without it the body is the stats body alone."""
    now = datetime.now(UTC).replace(microsecond=0)
    statuses = ["completed", "completed", "busy", "no_answer"]
    recent = []
    for n, status_ in enumerate(statuses):
        event = entity_event("cmp_0", "org_0", "record", 900 + n, 1)
        event.update(call_status=status_, duration_seconds=30.0, is_follow_up=False)
        event["occurred_at"] = (now - timedelta(minutes=n + 1)).isoformat().replace("+00:00", "Z")
        recent.append(parsed(event))
    await apply_events(store, [("t", 2, n, e) for n, e in enumerate(recent)])
    token = await store.create_token("org_0")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        bad = await http.get(f"/api/v1/campaigns/cmp_0/stats/stream?access_token={token}&window=2d")
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "window"]
        responses = []
        for query in ("&window=15m", ""):
            stream = asyncio.create_task(
                http.get(f"/api/v1/campaigns/cmp_0/stats/stream?access_token={token}{query}")
            )
            responses.append(stream)

            async def opened(count: int = len(responses)) -> bool:
                return len(app.state.updates._waiters.get("cmp_0", ())) == count

            await async_wait_until(opened, timeout=10, interval=0.02, what="the stream")
        assert await store.revoke_token(token)
        windowed, plain = [await asyncio.wait_for(s, timeout=HEARTBEAT * 6) for s in responses]
    first = sse_events(windowed.text)[0]["data"]
    assert first["window"]["minutes"] == 15
    assert first["window"]["attempts"] == len(statuses)
    assert first["window"]["calls"]["completed"] == 2
    assert first["window"]["connect_rate"] == 0.5
    assert "window" not in sse_events(plain.text)[0]["data"]
    assert {k: v for k, v in first.items() if k != "window"} == sse_events(plain.text)[0]["data"]


async def test_a_quiet_campaigns_window_moves_on_with_the_clock(
    app: Any, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No new revision, but half an hour later: a stream's window no longer counts calls
    that left it (the cached event is not reused across minutes)."""
    now = datetime.now(UTC).replace(microsecond=0)
    event = entity_event("cmp_0", "org_0", "record", 990, 1)
    event["occurred_at"] = (now - timedelta(minutes=2)).isoformat().replace("+00:00", "Z")
    await apply_events(store, [("t", 3, 0, parsed(event))])
    token = await store.create_token("org_0")
    transport = httpx.ASGITransport(app=app)
    attempts = []
    for shift in (0, 30 * 60_000):
        real = stream_route.now_ms
        monkeypatch.setattr(stream_route, "now_ms", lambda real=real, s=shift: real() + s)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            url = f"/api/v1/campaigns/cmp_0/stats/stream?access_token={token}&window=15m"
            stream = asyncio.create_task(http.get(url))

            async def opened() -> bool:
                return bool(app.state.updates._waiters.get("cmp_0"))

            await async_wait_until(opened, timeout=10, interval=0.02, what="the stream")
            await store.revoke_token(token)
            response = await asyncio.wait_for(stream, timeout=HEARTBEAT * 6)
        attempts.append(sse_events(response.text)[0]["data"]["window"]["attempts"])
        monkeypatch.undo()
        token = await store.create_token("org_0")
    assert attempts == [1, 0]
