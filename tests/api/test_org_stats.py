"""The organization rollup, GET /api/v1/stats: every campaign of the token's organization
summed, against an oracle that sums the per-campaign oracle; kept up to date from the
worker's announcements; ETag/304, window, tenancy and errors like the campaign route."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from api.main import create_app
from api.rollup import Rollups, _Org
from api.routes import stats as route
from processors.store import keys
from processors.store.client import Store
from processors.worker.pipeline import BatchProcessor
from tests.api.serving import auth, serve
from tests.conftest import async_wait_until
from tests.oracle import Expected
from tests.store.test_reconcile import Rec
from tests.streams import random_stream

TOPICS = {
    "batch.upserted": "dialer.batches",
    "contact.status_changed": "dialer.contacts",
    "call_record.completed": "dialer.call_records",
}


class Worker:
    """Events through the worker's pipeline (which announces what it applied)."""

    def __init__(self, store: Store) -> None:
        async def send(key: bytes | None, value: bytes, headers: list[Any]) -> None:
            pass

        async def epoch(topic: str, partition: int) -> int:
            return 1

        self.processor = BatchProcessor(store, send, epoch)
        self.offset = 0

    async def deliver(self, events: list[dict[str, Any]], rng: random.Random) -> None:
        position = 0
        while position < len(events):
            chunk = events[position : position + rng.randint(1, 60)]
            records = []
            for event in chunk:
                records.append(
                    Rec(
                        TOPICS[event["event_type"]],
                        0,
                        self.offset,
                        b"k",
                        json.dumps(event).encode(),
                    )
                )
                self.offset += 1
            await self.processor.process(records)
            position += len(chunk)


def oracle(events: list[dict[str, Any]], org: str) -> dict[str, Any]:
    return Expected(events).org_stats(org)


@pytest.fixture
async def seeded(store: Store) -> tuple[list[dict[str, Any]], Worker]:
    rng = random.Random(21)
    events = random_stream(rng, campaigns=5, size=500)
    worker = Worker(store)
    await worker.deliver(events, rng)
    return events, worker


@pytest.fixture
async def http(store: Store, seeded: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(store) as client:
        yield client


@pytest.mark.parametrize("org", ["org_0", "org_1"])
async def test_the_rollup_is_the_sum_of_the_organizations_campaigns(
    http: httpx.AsyncClient, store: Store, seeded: Any, org: str
) -> None:
    """Exactly the summed oracle of the organization's own campaigns, in the campaign
    body's order after `organization_id` and `campaigns`."""
    events, _ = seeded
    response = await http.get("/api/v1/stats", headers=await auth(store, org))
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == [
        "organization_id", "campaigns", "contact_counts", "batch_counts", "call_counters",
        "retry_breakdown", "in_flight_contacts", "total_call_attempts", "follow_up_attempts",
    ]  # fmt: skip
    assert body == oracle(events, org)


async def test_the_rollup_follows_every_change_and_answers_304_between(
    http: httpx.AsyncClient, store: Store, seeded: Any
) -> None:
    """After more events (corrections, duplicates, stale versions) the rollup equals the
    oracle again under a new ETag; the old ETag is 304 only while nothing changed; a
    second process, with a rollup of its own, answers the same."""
    events, worker = seeded
    headers = await auth(store, "org_0")
    first = await http.get("/api/v1/stats", headers=headers)
    etag = first.headers["etag"]
    again = await http.get("/api/v1/stats", headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag
    rng = random.Random(8)
    more = random_stream(rng, campaigns=5, size=150)
    for n, event in enumerate(more):
        event["version"] += 5  # newer versions: they change the counters
        event["event_id"] = f"more-{n}"
    await worker.deliver(more, rng)
    changed = await http.get("/api/v1/stats", headers={**headers, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json() == oracle(events + more, "org_0") != first.json()
    async with serve(store) as second:  # another process: an app of its own
        assert (await second.get("/api/v1/stats", headers=headers)).json() == changed.json()


async def test_a_full_read_catches_a_change_made_by_hand(store: Store, seeded: Any) -> None:
    """A campaign changed outside the workers (no announcement) shows at the next full
    read of every campaign."""
    app = create_app(store=store)
    app.state.rollups = Rollups(full_read_seconds=0.0)  # every read a full one
    headers = await auth(store, "org_1")
    async with serve(store, app) as http:
        before = (await http.get("/api/v1/stats", headers=headers)).json()
        await store.client.hincrby(keys.stats("cmp_1"), "calls:busy", 3)
        after = (await http.get("/api/v1/stats", headers=headers)).json()
    assert after["call_counters"]["busy_calls"] == before["call_counters"]["busy_calls"] + 3
    assert after["total_call_attempts"] == before["total_call_attempts"] + 3


async def test_the_window_sums_every_campaigns_recent_calls(
    http: httpx.AsyncClient, store: Store, seeded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`?window=15m`: the call records of the last 15 minutes of all the organization's
    campaigns (another organization's excluded); its own ETag."""
    now = int(datetime.now(UTC).timestamp() * 1000)
    monkeypatch.setattr(route, "now_ms", lambda: now)
    rng = random.Random(3)
    recent: list[dict[str, Any]] = []
    for n in range(60):
        campaign = rng.choice(["cmp_0", "cmp_2", "cmp_1"])
        moment = now - rng.randrange(0, 20 * 60_000)
        recent.append({
            "event_id": f"w{n}", "event_type": "call_record.completed",
            "organization_id": f"org_{int(campaign[-1]) % 2}", "campaign_id": campaign,
            "occurred_at": datetime.fromtimestamp(moment / 1000, UTC).isoformat(),
            "version": 1, "batch_id": "btc_w", "contact_id": f"con_w{n}",
            "execution_id": f"exe_w{n}", "call_status": rng.choice(["completed", "busy"]),
            "is_follow_up": False, "retry_index": 0, "duration_seconds": 10,
        })  # fmt: skip
    await seeded[1].deliver(recent, rng)
    headers = await auth(store, "org_0")
    plain = await http.get("/api/v1/stats", headers=headers)
    response = await http.get("/api/v1/stats", params={"window": "15m"}, headers=headers)
    assert response.status_code == 200 and response.headers["etag"] != plain.headers["etag"]
    window = response.json()["window"]
    first_minute = now // 60_000 - 14
    counted = [
        e for e in recent
        if e["organization_id"] == "org_0"
        and datetime.fromisoformat(e["occurred_at"]).timestamp() // 60 >= first_minute
    ]  # fmt: skip
    completed = sum(e["call_status"] == "completed" for e in counted)
    assert window["minutes"] == 15 and window["attempts"] == len(counted)
    assert window["calls"]["completed"] == completed
    assert window["calls"]["busy"] == len(counted) - completed
    assert window["dials_per_minute"] == pytest.approx(len(counted) / 15)
    assert {k: v for k, v in response.json().items() if k != "window"} == plain.json()


def call_record(n: int, moment_ms: int) -> dict[str, Any]:
    return {
        "event_id": f"x{n}", "event_type": "call_record.completed", "organization_id": "org_0",
        "campaign_id": "cmp_0", "occurred_at": datetime.fromtimestamp(moment_ms / 1000, UTC)
        .isoformat(), "version": 1, "batch_id": "btc_x", "contact_id": f"con_x{n}",
        "execution_id": f"exe_x{n}", "call_status": "completed", "is_follow_up": False,
        "retry_index": 0, "duration_seconds": 10,
    }  # fmt: skip


async def test_window_sums_kept_in_one_life_are_not_reused_in_the_next(
    store: Store, seeded: Any
) -> None:
    """The change counts start again in a new life of the counts hash, so a campaign's
    count can come back to a value it had. Reads overlap: one takes its counts under the
    rollup's lock and computes its window after; if a read of the new life ran between,
    the sums that first read keeps must not serve the new life, whose counts are equal."""
    now = int(datetime.now(UTC).timestamp() * 1000)
    rollups = Rollups()
    state = rollups._orgs.setdefault("org_0", _Org())
    await state.window_lock.acquire()  # the old life's window waits here
    old = asyncio.create_task(rollups.body(store, "org_0", "life-1", "1", 15, now))

    async def counts_taken() -> bool:
        return state.life == "life-1" and not state.lock.locked()

    await async_wait_until(counts_taken, interval=0.01, what="the old life's counts")
    await rollups.body(store, "org_0", "life-2", "1")  # a plain read sees the new life
    state.window_lock.release()
    before = (await old)["window"]["attempts"]
    await seeded[1].deliver([call_record(n, now - 60_000) for n in range(4)], random.Random(1))
    # the same life and `#` as the plain read: its counts stand, equal to the old life's
    again = await rollups.body(store, "org_0", "life-2", "1", 15, now)
    assert again["window"]["attempts"] == before + 4


async def test_errors_like_the_other_routes(http: httpx.AsyncClient, store: Store) -> None:
    """401 with a challenge without a valid token; 422 with a detail for a bad window; an
    organization with no campaign gets zeros, not an error."""
    response = await http.get("/api/v1/stats", headers={"Authorization": "Bearer gat_nope"})
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert (await http.get("/api/v1/stats")).status_code == 401
    headers = await auth(store, "org_0")
    response = await http.get("/api/v1/stats", params={"window": "9d"}, headers=headers)
    assert response.status_code == 422 and response.json()["detail"]
    empty = (await http.get("/api/v1/stats", headers=await auth(store, "org_none"))).json()
    assert empty["campaigns"] == 0 and empty["total_call_attempts"] == 0
    assert sum(empty["contact_counts"].values()) == 0
