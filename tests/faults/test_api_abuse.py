"""API abuse: bad tokens, other tenants, injection attempts, and schemathesis fuzzing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from api.main import create_app
from processors.settings import Settings
from processors.store.client import Store, connect
from processors.tools.embedded import Valkey
from tests.store.test_apply import apply_events
from tests.streams import parsed, random_stream

INJECTIONS = [
    "cmp_0' OR '1'='1", "cmp_0;DROP", "../cmp_0", "cmp_0%00", "*", "{cmp_0}", "cmp_0:*",
    "ds:{cmp_0}:stats", "cmp_0%0d%0aX-Evil:%201", "%2e%2e%2f", "cmp_0" + "x" * 300, "ünï",
]  # fmt: skip


@pytest.fixture(scope="module")
def seeded(valkey_server: Valkey) -> dict[str, Any]:
    """Two organizations' campaigns in real valkey, and a token each."""

    async def seed() -> dict[str, Any]:
        store = Store(connect(Settings(redis_url=valkey_server.url)))
        await store.client.flushall()
        events = random_stream(random.Random(3), campaigns=2, size=200)
        log = [("t", 0, n, parsed(e)) for n, e in enumerate(events)]
        await apply_events(store, log)
        await store.register_campaigns({e["campaign_id"]: e["organization_id"] for e in events})
        tokens = {org: await store.create_token(org) for org in ("org_0", "org_1")}
        revoked = await store.create_token("org_0")
        await store.revoke_token(revoked)
        await store.close()
        return {"tokens": tokens, "revoked": revoked, "url": valkey_server.url}

    return asyncio.run(seed())


@pytest.fixture(scope="module")
def app(seeded: dict[str, Any]) -> Any:
    return create_app(Settings(redis_url=seeded["url"]))


@pytest.fixture(scope="module")
def client(app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client


def test_tokens_and_tenants(client: Any, seeded: dict[str, Any]) -> None:
    """No, garbled, unknown or revoked token: 401; the other tenant's campaign: 404."""
    own, other = seeded["tokens"]["org_0"], seeded["tokens"]["org_1"]
    garbled = [None, "", "Bearer", "Bearer ", "Bearer gat_", "Bearer gat_" + "a" * 300]
    garbled += [f"Bearer {seeded['revoked']}", f"bearer {own}x", f"Token {own}", "Bearer \x00"]
    for header in garbled:
        headers = {"Authorization": header} if header is not None else {}
        response = client.get("/api/v1/campaigns/cmp_0/stats", headers=headers)
        assert response.status_code == 401, header
        assert response.headers["www-authenticate"] == "Bearer"
    for path in ("stats", "batches", "reconciliation"):
        theirs = client.get(f"/api/v1/campaigns/cmp_0/{path}", headers=_auth(other))
        missing = client.get(f"/api/v1/campaigns/cmp_none/{path}", headers=_auth(other))
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json() == missing.json() == {"detail": "Campaign not found"}
    forbidden = client.get(
        "/api/v1/campaigns/cmp_0/batches", params={"organization_id": "org_1"}, headers=_auth(own)
    )
    assert forbidden.status_code == 403


def test_injection_attempts_never_fail_or_leak(client: Any, seeded: dict[str, Any]) -> None:
    """Odd ids and query values: 4xx with a detail, never 5xx, never another tenant's data."""
    other = seeded["tokens"]["org_1"]
    for campaign in INJECTIONS:
        for path in ("stats", "batches"):
            response = client.get(f"/api/v1/campaigns/{campaign}/{path}", headers=_auth(other))
            assert 400 <= response.status_code < 500, (campaign, response.status_code)
            body = response.json()
            assert set(body) == {"detail"} and body["detail"], body  # an error, never data
    for params in [{"skip": "1;DROP"}, {"limit": "-1"}, {"status": "pending' OR 1=1"},
                   {"organization_id": "org_0"}, {"skip": "99999999999999999999"}]:  # fmt: skip
        response = client.get(
            "/api/v1/campaigns/cmp_1/batches", params=params, headers=_auth(other)
        )
        assert response.status_code in (403, 422), (params, response.status_code)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_schemathesis_no_server_errors(app: Any, seeded: dict[str, Any]) -> None:
    """Generated requests for every operation: conformant responses, never a 5xx."""
    from hypothesis import given

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(headers=_auth(seeded["tokens"]["org_1"]))

        check()
        checked += 1
    assert checked >= 6
