"""Batch progress: terminal contacts, the rate of the last 15 minutes of event time and the
ETA, against an oracle computed from the events; tenancy and errors like the other routes."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.routes import progress as route
from processors.store.client import Store
from tests.api.serving import freeze_clock, serve
from tests.store.test_apply import apply_log
from tests.streams import parsed

ORG, OTHER_ORG, CMP = "org_pg", "org_other", "cmp_pg"
STATUSES = (
    "pending", "dispatched", "in_progress", "retrying", "completed", "failed", "busy",
    "no_answer", "skipped", "followup_scheduled", "max_retries_reached",
)  # fmt: skip
DONE = {"completed", "failed", "busy", "no_answer", "skipped", "max_retries_reached"}
BATCHES = ("btc_a", "btc_b", "btc_c")


def at(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def events_for(rng: random.Random, now: int) -> list[dict[str, Any]]:
    """Batches a and b announced, c known only from contacts; contacts with up to four
    versions over the last 40 minutes, some moving batch; duplicates; any order."""
    out: list[dict[str, Any]] = []
    common = {"organization_id": ORG, "campaign_id": CMP}
    for n, batch_id in enumerate(BATCHES[:2]):
        out.append({
            **common, "event_id": f"b{n}", "event_type": "batch.upserted", "version": 1,
            "occurred_at": at(now - 50 * 60_000), "batch_id": batch_id, "status": "in_progress",
            "total_contacts": 40 + 10 * n, "created_at": at(now - 60 * 60_000 + n),
        })  # fmt: skip
    for c in range(90):
        moments = sorted(rng.randrange(now - 40 * 60_000, now) for _ in range(rng.randint(1, 4)))
        for version, moment in enumerate(moments, start=1):
            status = rng.choice(STATUSES)
            out.append({
                **common, "event_id": f"c{c}.{version}", "event_type": "contact.status_changed",
                "version": version, "occurred_at": at(moment), "batch_id": rng.choice(BATCHES),
                "contact_id": f"con_{c}", "status": status.upper() if c % 5 == 0 else status,
                "retry_count": rng.randint(1, 3) if status == "retrying" else 0,
                "follow_up_count": 0,
            })  # fmt: skip
    out += [dict(e) for e in rng.sample(out, len(out) // 6)]
    rng.shuffle(out)
    return out


def oracle(events: list[dict[str, Any]], batch_id: str, now: int) -> dict[str, Any]:
    """The progress of one batch, from the latest version of every contact."""
    latest: dict[str, dict[str, Any]] = {}
    for e in (e for e in events if e["event_type"] == "contact.status_changed"):
        if e["contact_id"] not in latest or e["version"] > latest[e["contact_id"]]["version"]:
            latest[e["contact_id"]] = e
    mine = [e for e in latest.values() if e["batch_id"] == batch_id]
    done = [e for e in mine if e["status"].lower() in DONE]
    current = now // 60_000
    recent = [
        e for e in done
        if current - 14 <= datetime.fromisoformat(e["occurred_at"]).timestamp() // 60 <= current
    ]  # fmt: skip
    totals = {
        e["batch_id"]: e["total_contacts"] for e in events if e["event_type"] == "batch.upserted"
    }
    total = totals.get(batch_id, len(mine))
    rate = len(recent) / 15
    eta = None
    if rate and len(done) < total:
        finish = datetime.fromtimestamp(now / 1000, UTC) + timedelta(
            minutes=(total - len(done)) / rate
        )
        eta = finish.replace(microsecond=0)
    return {"total_contacts": total, "done": len(done), "rate_per_minute": rate, "eta": eta}


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> int:
    """The API's clock, frozen (the store keeps progress by the real one, near it)."""
    return freeze_clock(monkeypatch, route)


@pytest.fixture
async def seeded(store: Store, now: int) -> list[dict[str, Any]]:
    events = events_for(random.Random(15), now)
    log = [("dialer.contacts", 0, n, parsed(e)) for n, e in enumerate(events)]
    await apply_log(store, log, random.Random(3))
    await store.register_campaigns({CMP: ORG})
    return events


@pytest.fixture
async def http(store: Store, seeded: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(store) as client:
        yield client


def path(batch_id: str, campaign: str = CMP) -> str:
    return f"/api/v1/campaigns/{campaign}/batches/{batch_id}/progress"


@pytest.mark.parametrize("batch_id", BATCHES)
async def test_progress_equals_the_oracle(
    http: httpx.AsyncClient, store: Store, seeded: list[dict[str, Any]], now: int, batch_id: str
) -> None:
    """done, total, the rate over the last 15 minutes and the ETA, for announced batches
    and one known only from its contacts, whatever the delivery order and repetition."""
    headers = {"Authorization": f"Bearer {await store.create_token(ORG)}"}
    response = await http.get(path(batch_id), headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["batch_id", "total_contacts", "done", "rate_per_minute", "eta"]
    want = oracle(seeded, batch_id, now)
    assert want["rate_per_minute"] > 0 and want["done"] > 0  # the data exercises the rate
    assert body["batch_id"] == batch_id
    assert body["total_contacts"] == want["total_contacts"]
    assert body["done"] == want["done"]
    assert body["rate_per_minute"] == pytest.approx(want["rate_per_minute"])
    if want["eta"] is None:
        assert body["eta"] is None
    else:
        got = datetime.fromisoformat(body["eta"].replace("Z", "+00:00"))
        assert abs(got - want["eta"]) <= timedelta(seconds=1)
    listed = {
        b["batch_id"]: b
        for b in (await http.get(f"/api/v1/campaigns/{CMP}/batches", headers=headers)).json()
    }
    assert listed[batch_id]["total_contacts"] == body["total_contacts"]  # as in the list
    assert set(listed[batch_id]) == {
        "batch_id", "campaign_id", "status", "total_contacts", "counters", "retry_breakdown",
        "created_at",
    }  # the list keeps exactly the incumbent's shape  # fmt: skip


async def test_a_batch_that_leaves_terminal_leaves_the_rate(
    http: httpx.AsyncClient, store: Store, seeded: list[dict[str, Any]], now: int
) -> None:
    """A newer version taking a done contact back to retrying (or to another batch) takes
    it out of its old batch's done and rate; replays of the old version change nothing."""
    headers = {"Authorization": f"Bearer {await store.create_token(ORG)}"}
    base = {"organization_id": ORG, "campaign_id": CMP, "event_type": "contact.status_changed",
            "follow_up_count": 0}  # fmt: skip
    done = {
        **base,
        "event_id": "x1",
        "version": 1,
        "occurred_at": at(now - 60_000),
        "batch_id": "btc_a",
        "contact_id": "con_x",
        "status": "completed",
        "retry_count": 0,
    }
    before = (await http.get(path("btc_a"), headers=headers)).json()
    log = [("dialer.contacts", 1, 0, parsed(done))]
    await apply_log(store, log, random.Random(1))
    after = (await http.get(path("btc_a"), headers=headers)).json()
    assert after["done"] == before["done"] + 1
    assert after["rate_per_minute"] == pytest.approx(before["rate_per_minute"] + 1 / 15)
    moved = {
        **done,
        "event_id": "x2",
        "version": 2,
        "occurred_at": at(now - 30_000),
        "batch_id": "btc_b",
        "status": "retrying",
        "retry_count": 1,
    }
    await apply_log(store, [("dialer.contacts", 1, 1, parsed(moved)), *log], random.Random(2))
    again = (await http.get(path("btc_a"), headers=headers)).json()
    assert (again["done"], again["rate_per_minute"]) == (before["done"], before["rate_per_minute"])


async def test_tenancy_and_errors(http: httpx.AsyncClient, store: Store) -> None:
    """Another organization's campaign looks missing; an unknown batch is 404; no token
    401; an id too long 422."""
    mine = {"Authorization": f"Bearer {await store.create_token(ORG)}"}
    other = {"Authorization": f"Bearer {await store.create_token(OTHER_ORG)}"}
    response = await http.get(path("btc_a"), headers=other)
    assert (response.status_code, response.json()) == (404, {"detail": "Campaign not found"})
    response = await http.get(path("btc_nope"), headers=mine)
    assert (response.status_code, response.json()) == (404, {"detail": "Batch not found"})
    response = await http.get(path("btc_a", "cmp_nope"), headers=mine)
    assert response.status_code == 404
    response = await http.get(path("btc_a"))
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    response = await http.get(path("b" * 129), headers=mine)
    assert response.status_code == 422 and response.json()["detail"]
