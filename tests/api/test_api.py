"""The HTTP API: shapes, auth, tenancy, validation, caching and 503s."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from api.main import create_app
from processors.store import keys
from processors.store.client import Store
from processors.tools.embedded import free_port
from tests import batches
from tests.api.serving import auth, serve
from tests.oracle import Expected, comparable_batches
from tests.store.test_apply import apply_events
from tests.streams import entity_event, parsed, random_stream


@pytest.fixture
async def seeded(store: Store) -> tuple[Store, list[dict[str, Any]]]:
    events = random_stream(random.Random(11), campaigns=3, size=200)
    log = [("t", 0, offset, parsed(e)) for offset, e in enumerate(events)]
    await apply_events(store, log)
    await store.register_campaigns({e["campaign_id"]: e["organization_id"] for e in events})
    return store, events


@pytest.fixture
async def client(seeded: tuple[Store, list[dict[str, Any]]]) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(seeded[0]) as http:
        yield http


async def test_stats_have_exactly_the_incumbent_shape_and_values(
    client: httpx.AsyncClient, seeded: Any
) -> None:
    """Every campaign's stats equal the oracle, with exactly the seed's keys."""
    store, events = seeded
    expected = Expected(events)
    for campaign in expected.campaigns:
        response = await client.get(
            f"/api/v1/campaigns/{campaign}/stats",
            headers=await auth(store, expected.owner[campaign]),
        )
        assert response.status_code == 200
        body = response.json()
        assert list(body) == [
            "campaign_id", "contact_counts", "batch_counts", "call_counters", "retry_breakdown",
            "in_flight_contacts", "total_call_attempts", "follow_up_attempts",
        ]  # fmt: skip
        assert body == expected.stats(campaign)
        assert len(body["contact_counts"]) == 11


async def test_batches_page_through_in_order(client: httpx.AsyncClient, seeded: Any) -> None:
    """skip/limit pages concatenate to the whole ordered list."""
    store, events = seeded
    expected = Expected(events)
    campaign = expected.campaigns[0]
    headers = await auth(store, expected.owner[campaign])
    pages: list[dict[str, Any]] = []
    for skip in range(0, 10, 2):
        response = await client.get(
            f"/api/v1/campaigns/{campaign}/batches",
            params={"skip": skip, "limit": 2},
            headers=headers,
        )
        assert response.status_code == 200
        pages += response.json()
    assert [b["batch_id"] for b in pages] == [b["batch_id"] for b in expected.batches(campaign)]
    assert set(pages[0]) == {
        "batch_id",
        "campaign_id",
        "status",
        "total_contacts",
        "counters",
        "retry_breakdown",
        "created_at",
    }


async def test_batch_pages_follow_every_change_exactly(store: Store) -> None:
    """Read after every applied event, each page equals the oracle over the events so far:
    batches rendered at an earlier read are reused only while their hash is unchanged."""

    events = random_stream(random.Random(5), campaigns=1, size=150)
    campaign, org = events[0]["campaign_id"], events[0]["organization_id"]
    await store.register_campaigns({campaign: org})
    headers = await auth(store, org)
    async with serve(store) as http:
        for n, event in enumerate(events, start=1):
            await apply_events(store, [("t", 0, n, parsed(event))])
            response = await http.get(
                f"/api/v1/campaigns/{campaign}/batches", params={"limit": 500}, headers=headers
            )
            assert response.status_code == 200
            listed = comparable_batches(response.json())
            assert listed == Expected(events[:n]).batches(campaign), f"after {n}"


async def test_a_batch_not_yet_moved_renders_as_its_own_hash_says(store: Store) -> None:
    """A batch still in a hash of its own (as batches were kept before the batches hash)
    is listed and rendered from that hash, and moves into the batches hash unchanged when
    the worker next changes it."""
    events = random_stream(random.Random(8), campaigns=1, size=120)
    campaign, org = events[0]["campaign_id"], events[0]["organization_id"]
    await apply_events(store, [("t", 0, n, parsed(e)) for n, e in enumerate(events)])
    await store.register_campaigns({campaign: org})
    listed = [b["batch_id"] for b in await store.batches(campaign, limit=500)]
    for batch_id in listed[::2]:
        await batches.to_own_hash(store, campaign, batch_id)
    headers = await auth(store, org)
    async with serve(store) as http:
        page = await http.get(f"/api/v1/campaigns/{campaign}/batches?limit=500", headers=headers)
    assert page.status_code == 200
    assert comparable_batches(page.json()) == Expected(events).batches(campaign)

    contact = entity_event(campaign, org, "contact", 9999, 1)
    contact["batch_id"] = listed[0]
    await apply_events(store, [("t", 1, 0, parsed(contact))])
    assert not await store.client.exists(keys.legacy_batch(campaign, listed[0]))
    assert await store.client.exists(keys.legacy_batch(campaign, listed[2]))
    got = comparable_batches(await store.batches(campaign, limit=500))
    assert got == Expected([*events, contact]).batches(campaign)


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer gat_unknown", "Bearer not_a_gat_token", "Basic Zm9vOmJhcg==", "gat_x"],
)
async def test_missing_or_invalid_token_is_401_with_challenge(
    client: httpx.AsyncClient, header: str | None
) -> None:
    """401 and WWW-Authenticate: Bearer for anything but a known token."""
    headers = {"Authorization": header} if header else {}
    response = await client.get("/api/v1/campaigns/cmp_0/stats", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["detail"]


async def test_revoked_token_is_refused(client: httpx.AsyncClient, seeded: Any) -> None:
    """A revoked token stops working at once."""
    store, _ = seeded
    token = await store.create_token("org_0")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/v1/campaigns/cmp_0/stats", headers=headers)).status_code == 200
    assert await store.revoke_token(token)
    assert (await client.get("/api/v1/campaigns/cmp_0/stats", headers=headers)).status_code == 401


async def test_other_tenants_campaign_looks_missing(client: httpx.AsyncClient, seeded: Any) -> None:
    """Another organization's campaign and a missing one are indistinguishable."""
    store, _ = seeded
    headers = await auth(store, "org_1")  # owns cmp_1 only
    for campaign in ("cmp_0", "cmp_nope"):
        for resource in ("stats", "batches"):
            path = f"/api/v1/campaigns/{campaign}/{resource}"
            response = await client.get(path, headers=headers)
            assert response.status_code == 404
            assert response.json() == {"detail": "Campaign not found"}
    listing = await client.get("/api/v1/campaigns", headers=headers)
    assert listing.json()["campaigns"] == ["cmp_1"]


@pytest.mark.parametrize(
    "params",
    [
        {"skip": -1},
        {"limit": 0},
        {"limit": 501},
        {"status": "running"},
        {"skip": "x"},
        {"limit": "1.5"},
    ],
)
async def test_invalid_query_is_422_with_detail(
    client: httpx.AsyncClient, seeded: Any, params: dict[str, Any]
) -> None:
    """skip >= 0, 1 <= limit <= 500, status one of the batch statuses."""
    store, _ = seeded
    response = await client.get(
        "/api/v1/campaigns/cmp_0/batches", params=params, headers=await auth(store, "org_0")
    )
    assert response.status_code == 422
    assert response.json()["detail"]


async def test_status_filter_and_organization_id(client: httpx.AsyncClient, seeded: Any) -> None:
    """A matching organization_id is fine; another one is 403; status filters."""
    store, events = seeded
    headers = await auth(store, "org_0")
    ok = await client.get(
        "/api/v1/campaigns/cmp_0/batches",
        params={"organization_id": "org_0", "status": "paused"},
        headers=headers,
    )
    assert ok.status_code == 200
    expected = [b["batch_id"] for b in Expected(events).batches("cmp_0") if b["status"] == "paused"]
    assert [b["batch_id"] for b in ok.json()] == expected
    forbidden = await client.get(
        "/api/v1/campaigns/cmp_0/batches", params={"organization_id": "org_1"}, headers=headers
    )
    assert forbidden.status_code == 403
    assert "organization_id" in forbidden.json()["detail"]


async def test_etag_and_if_none_match(client: httpx.AsyncClient, seeded: Any) -> None:
    """Unchanged stats answer 304; a change gives a new ETag."""
    store, _ = seeded
    headers = await auth(store, "org_0")
    first = await client.get("/api/v1/campaigns/cmp_0/stats", headers=headers)
    etag = first.headers["etag"]
    assert first.headers["x-last-event-at"].endswith("Z")
    again = await client.get(
        "/api/v1/campaigns/cmp_0/stats", headers={**headers, "If-None-Match": etag}
    )
    assert again.status_code == 304 and again.content == b""
    newer = parsed(entity_event("cmp_0", "org_0", "contact", 99, 1))
    await apply_events(store, [("t", 1, 0, newer)])
    changed = await client.get(
        "/api/v1/campaigns/cmp_0/stats", headers={**headers, "If-None-Match": etag}
    )
    assert changed.status_code == 200 and changed.headers["etag"] != etag


async def test_redis_down_is_503_never_zeros() -> None:
    """With Redis unreachable, reads answer 503 with a clear detail."""
    dead = Store(
        aioredis.Redis(port=free_port(), decode_responses=True, socket_connect_timeout=0.5)
    )
    app = create_app(store=dead)
    app.state.store = dead
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        response = await http.get(
            "/api/v1/campaigns/cmp_0/stats", headers={"Authorization": "Bearer gat_x"}
        )
        assert response.status_code == 503
        assert "Redis" in response.json()["detail"]
        assert (await http.get("/readyz")).status_code == 503
        assert (await http.get("/healthz")).status_code == 200
    await dead.close()


async def test_openapi_documents_the_routes(client: httpx.AsyncClient) -> None:
    """OpenAPI is served and lists both compatibility endpoints."""
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/campaigns/{campaign_id}/stats" in spec["paths"]
    assert "/api/v1/campaigns/{campaign_id}/batches" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200


@pytest.mark.parametrize("query", ["", "?window=15m"])
async def test_openapi_lists_the_stats_keys_in_the_bodys_order(
    client: httpx.AsyncClient, seeded: Any, query: str
) -> None:
    """The documented properties of a campaign's and an organization's stats are the keys
    of the bodies served, in the same order."""
    store, events = seeded
    headers = await auth(store, events[0]["organization_id"])
    spec = (await client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    for path, schema in (
        (f"/api/v1/campaigns/{events[0]['campaign_id']}/stats", "CampaignStats"),
        ("/api/v1/stats", "OrgStats"),
    ):
        response = await client.get(path + query, headers=headers)
        assert response.status_code == 200, response.text
        served = list(response.json())
        documented = [key for key in schemas[schema]["properties"] if key in served]
        assert documented == served, path
        assert set(schemas[schema]["properties"]) - set(served) <= {"window"}, path


def test_api_never_imports_faust() -> None:
    """The API process stays free of the worker's dependencies."""
    code = "import sys, api.main; api.main.create_app(); print('faust' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_reconciliation_report_route(client: httpx.AsyncClient, seeded: Any) -> None:
    """The last report is served to the owner only; before any run it is a clear 404."""
    from processors.store import keys

    store, _ = seeded
    headers = await auth(store, "org_0")
    missing = await client.get("/api/v1/campaigns/cmp_0/reconciliation", headers=headers)
    assert missing.status_code == 404
    assert "No reconciliation report" in missing.json()["detail"]
    await store.client.set(
        keys.reconciliation("cmp_0"), json.dumps({"campaign_id": "cmp_0", "drift": 3})
    )
    found = await client.get("/api/v1/campaigns/cmp_0/reconciliation", headers=headers)
    assert found.status_code == 200 and found.json()["drift"] == 3
    other = await client.get(
        "/api/v1/campaigns/cmp_0/reconciliation", headers=await auth(store, "org_1")
    )
    assert other.status_code == 404 and other.json() == {"detail": "Campaign not found"}


async def test_metrics_and_readiness_detail(client: httpx.AsyncClient, seeded: Any) -> None:
    """/metrics exposes request latency by route; /readyz reports the workers' lag."""
    store, _ = seeded
    await client.get("/api/v1/campaigns/cmp_0/stats", headers=await auth(store, "org_0"))
    await store.set_lag({"dialer.contacts:0": 7, "dialer.contacts:1": 5})
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["consumer_lag"] == 12
    assert ready.json()["consumer_lag_by_partition"]["dialer.contacts:0"] == 7
    text = (await client.get("/metrics")).text
    assert 'route="/api/v1/campaigns/{campaign_id}/stats"' in text
    assert "dialer_stats_http_request_seconds_bucket" in text


async def test_readiness_reports_only_lag_entries_still_refreshed(
    client: httpx.AsyncClient, seeded: Any
) -> None:
    """A partition nobody reports any more (moved, or its worker died) leaves /readyz once
    its entry expires; one a worker dropped on revocation leaves at once."""
    from processors.store import keys

    store, _ = seeded
    seconds, micros = await store.client.time()
    expired = int(seconds) * 1000 + int(micros) // 1000 - int(store.lag_ttl * 1000) - 1
    await store.set_lag({"dialer.contacts:0": 7, "dialer.contacts:1": 5})
    await store.client.hset(keys.LAG, "dialer.contacts:2", f"90000:{expired}")
    body = (await client.get("/readyz")).json()
    assert body["consumer_lag_by_partition"] == {"dialer.contacts:0": 7, "dialer.contacts:1": 5}
    assert body["consumer_lag"] == 12

    await store.drop_lag(["dialer.contacts:0"])
    body = (await client.get("/readyz")).json()
    assert (body["consumer_lag"], body["consumer_lag_by_partition"]) == (
        5,
        {"dialer.contacts:1": 5},
    )
