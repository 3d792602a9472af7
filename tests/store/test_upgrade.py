"""Upgrading from the millisecond batch layout: index scores in milliseconds and the batch
hash field `cms` (before commit a3f5d3d) become microseconds and `created_us`, by a
reconcile run for every batch and by APPLY_SLICE for a batch a batch event touches."""

from __future__ import annotations

from typing import Any

from processors.domain.contract import BATCH_STATUSES
from processors.reconcile.runner import Reconciler
from processors.store import keys
from processors.store.client import Store
from tests import batches
from tests.store.test_apply import apply_events
from tests.store.test_reconcile import ListSource, load
from tests.streams import parsed

CMP = "cmp_up"
ORG = "org_up"


def batch_event(n: int, batch_id: str, created_at: str, version: int = 1, **changes: Any) -> Any:
    event = {
        "event_id": f"evt_{n}",
        "event_type": "batch.upserted",
        "organization_id": ORG,
        "campaign_id": CMP,
        "occurred_at": "2026-05-08T09:00:00Z",
        "version": version,
        "batch_id": batch_id,
        "status": "pending",
        "total_contacts": 2,
        "created_at": created_at,
    }
    return {**event, **changes}


def contact_event(n: int, contact_id: str, batch_id: str) -> dict[str, Any]:
    return {
        "event_id": f"evt_{n}",
        "event_type": "contact.status_changed",
        "organization_id": ORG,
        "campaign_id": CMP,
        "occurred_at": "2026-05-08T09:00:00Z",
        "version": 1,
        "batch_id": batch_id,
        "contact_id": contact_id,
        "status": "completed",
        "retry_count": 0,
        "follow_up_count": 0,
    }


async def to_old_layout(store: Store, batch_id: str) -> None:
    """Rewrite a batch as the millisecond-layout worker left it: `cms` in the hash, index
    scores (all batches and its status) in milliseconds."""
    client = store.client
    row = await batches.fields(store, CMP, batch_id)
    ms = int(row.pop("created_us")) // 1000
    await batches.to_own_hash(store, CMP, batch_id, {**row, "cms": ms})
    await client.zadd(keys.batch_index(CMP), {batch_id: ms}, xx=True)
    await client.zadd(keys.batch_index(CMP, row["s"]), {batch_id: ms}, xx=True)


async def listed(store: Store, status: str | None = None) -> list[str]:
    return [b["batch_id"] for b in await store.batches(CMP, status=status)]


async def scores(store: Store) -> dict[str | None, list[tuple[str, float]]]:
    """Every index of the campaign with its scores."""
    out: dict[str | None, list[tuple[str, float]]] = {}
    for status in (None, *BATCH_STATUSES):
        index = keys.batch_index(CMP, status)
        out[status] = await store.client.zrange(index, 0, -1, withscores=True)
    return out


async def test_reconcile_migrates_the_millisecond_layout(store: Store) -> None:
    """A Redis written by the old worker (ms scores, `cms`), then by the new one: batches list
    out of order (ms scores sort before every µs score) until `dialer-stats reconcile` runs.
    A dry run reports the batches to migrate and writes nothing; the run rewrites every old
    hash and index entry (the per-status indexes too), reports no drift, and lists batches
    by created_at again; a second run has nothing left to migrate."""
    events = [
        batch_event(0, "btc_old_b", "2024-06-01T00:00:00.002Z"),
        batch_event(1, "btc_old_a", "2024-06-01T00:00:00.001Z", status="completed"),
        contact_event(2, "con_1", "btc_old_a"),
        batch_event(3, "btc_new_late", "2025-01-01T00:00:00Z"),
        batch_event(4, "btc_new_early", "2023-06-01T00:00:00Z"),
    ]
    source = ListSource(events, partitions=1)
    await load(store, source, 0, 3)
    for batch_id in ("btc_old_a", "btc_old_b"):  # what the old worker left
        await to_old_layout(store, batch_id)
    await load(store, source, 3)  # the new worker goes on
    assert await listed(store) == ["btc_old_a", "btc_old_b", "btc_new_early", "btc_new_late"]

    before = await scores(store)
    (dry,) = (await Reconciler(store, source).run(dry_run=True)).campaigns
    assert (dry.batches_migrated, dry.drift, dry.fields) == (2, 0, [])
    assert await scores(store) == before

    (run,) = (await Reconciler(store, source).run()).campaigns
    assert (run.batches_migrated, run.drift, run.fields) == (2, 0, [])
    assert await listed(store) == ["btc_new_early", "btc_old_a", "btc_old_b", "btc_new_late"]
    assert await listed(store, "pending") == ["btc_new_early", "btc_old_b", "btc_new_late"]
    assert await listed(store, "completed") == ["btc_old_a"]
    after = await scores(store)
    assert dict(after[None])["btc_old_a"] == 1717200000001000
    assert after["completed"] == [("btc_old_a", 1717200000001000)]
    for batch_id in ("btc_old_a", "btc_old_b"):
        assert not await store.client.exists(keys.legacy_batch(CMP, batch_id))  # moved
        row = await batches.fields(store, CMP, batch_id)
        assert int(row["created_us"]) == dict(after[None])[batch_id]

    (again,) = (await Reconciler(store, source).run()).campaigns
    assert (again.batches_migrated, again.drift) == (0, 0)
    assert await scores(store) == after


async def test_a_batch_event_migrates_the_batch_it_touches(store: Store) -> None:
    """APPLY_SLICE rewrites an old-layout batch a batch event reaches, whether the event
    applies (a newer version: its own created_at) or is stale (the stored created_at,
    rescaled): `cms` goes, `created_us` and both index scores are microseconds."""
    await apply_events(
        store,
        [
            ("t", 0, 0, parsed(batch_event(0, "btc_x", "2024-06-01T00:00:00.005Z", 2))),
            ("t", 0, 1, parsed(batch_event(1, "btc_y", "2024-06-01T00:00:00.007Z"))),
            ("t", 0, 2, parsed(batch_event(2, "btc_z", "2024-06-01T00:00:00.006Z"))),
        ],
    )
    for batch_id in ("btc_x", "btc_y", "btc_z"):
        await to_old_layout(store, batch_id)

    stale = parsed(batch_event(3, "btc_x", "2024-06-01T00:00:00.005Z", 1))
    newer = parsed(batch_event(4, "btc_y", "2024-06-01T00:00:00.004Z", 2, status="in_progress"))
    assert await apply_events(store, [("t", 0, 3, stale), ("t", 0, 4, newer)]) == [[2, 0]]

    x, y = [await batches.fields(store, CMP, b) for b in ("btc_x", "btc_y")]
    assert x["created_us"] == "1717200000005000" and x["v"] == "2"
    assert y["created_us"] == "1717200000004000" and y["s"] == "in_progress"
    own = [keys.legacy_batch(CMP, b) for b in ("btc_x", "btc_y", "btc_z")]
    assert [await store.client.exists(k) for k in own] == [0, 0, 1]  # x and y moved
    z = await store.client.hgetall(own[2])
    assert z["cms"] == "1717200000006" and "created_us" not in z  # untouched: reconcile's
    all_scores = dict((await scores(store))[None])
    assert all_scores == {
        "btc_x": 1717200000005000,
        "btc_y": 1717200000004000,
        "btc_z": 1717200000006,
    }
    assert await listed(store, "pending") == ["btc_z", "btc_x"]
    assert (await scores(store))["pending"][1] == ("btc_x", 1717200000005000)
    assert await listed(store, "in_progress") == ["btc_y"]
