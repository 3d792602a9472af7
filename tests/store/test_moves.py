"""Batch moves on fakeredis and real valkey: a newer contact version naming another batch
moves its counters; a batch known only from contacts lives exactly while one names it --
in APPLY_SLICE, REMOVE_ENTITIES and RECOUNT alike."""

from __future__ import annotations

from typing import Any

from processors.domain.contract import APPLIED, STALE
from processors.store import keys
from processors.store.client import Store
from tests import batches
from tests.store.test_apply import apply_events
from tests.streams import entity_event, parsed

CMP, ORG = "cmp_m", "org_m"


def contact(index: int, version: int, batch_id: str, status: str, retry: int = 0) -> Any:
    event = entity_event(CMP, ORG, "contact", index, version)
    event.update(batch_id=batch_id, status=status, retry_count=retry)
    return parsed(event)


def batch(batch_id: str, version: int, created_at: str = "2026-05-01T08:00:00Z") -> Any:
    event = entity_event(CMP, ORG, "batch", 0, version)
    event.update(batch_id=batch_id, status="in_progress", created_at=created_at)
    return parsed(event)


class Log:
    """Consecutive offsets on one partition, applied slice by slice."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.offset = 0

    async def apply(self, *events: Any) -> list[int]:
        items = []
        for event in events:
            items.append(("dialer.contacts", 0, self.offset, event))
            self.offset += 1
        [codes] = await apply_events(self.store, items)
        return codes


async def counters(store: Store, batch_id: str) -> dict[str, str]:
    fields = await batches.fields(store, CMP, batch_id)
    return {k: v for k, v in fields.items() if k.startswith(("known", "contacts:", "retry:"))}


async def listed(store: Store, status: str | None = None) -> list[str]:
    return [b["batch_id"] for b in await store.batches(CMP, status=status)]


async def test_a_newer_version_moves_the_contact_and_its_counters(store: Store) -> None:
    """Status, retry bucket and `known` leave the old batch and join the new one."""
    log = Log(store)
    assert await log.apply(batch("btc_a", 1), contact(1, 1, "btc_a", "retrying", 2)) == [
        APPLIED,
        APPLIED,
    ]
    assert await log.apply(contact(1, 2, "btc_x", "retrying", 2)) == [APPLIED]
    assert await counters(store, "btc_a") == {}
    assert await counters(store, "btc_x") == {
        "known": "1",
        "contacts:retrying": "1",
        "retry:2": "1",
    }
    stats = await store.stats(CMP)
    assert stats["contact_counts"]["retrying"] == 1
    assert stats["retry_breakdown"] == {"retry_2": 1}
    assert stats["batch_counts"]["pending"] == 1  # btc_x, known only from its contact
    assert await listed(store) == ["btc_a", "btc_x"]  # an upserted batch stays, even empty


async def test_a_contact_only_batch_goes_with_its_last_contact(store: Store) -> None:
    """Moved away from, a batch only contacts named is gone: hash, indexes, batch count."""
    log = Log(store)
    await log.apply(contact(1, 1, "btc_x", "pending"), contact(2, 1, "btc_x", "completed"))
    await log.apply(contact(1, 2, "btc_y", "pending"))
    assert await listed(store) == ["btc_x", "btc_y"]
    await log.apply(contact(2, 2, "btc_y", "failed"))
    assert await listed(store) == await listed(store, "pending") == ["btc_y"]
    assert not await batches.exists(store.client, CMP, "btc_x")
    stats = await store.stats(CMP)
    assert stats["batch_counts"]["pending"] == 1
    assert (await store.batches(CMP))[0]["total_contacts"] == 2


async def test_a_batch_emptied_and_refilled_in_one_slice_stays(store: Store) -> None:
    """Within one call, the batch is judged by its contacts at the end of the slice."""
    log = Log(store)
    await log.apply(contact(1, 1, "btc_x", "pending"))
    moved_and_joined = (contact(1, 2, "btc_y", "pending"), contact(2, 1, "btc_x", "busy"))
    assert await log.apply(*moved_and_joined) == [APPLIED, APPLIED]
    assert await listed(store) == ["btc_x", "btc_y"]
    assert await counters(store, "btc_x") == {"known": "1", "contacts:busy": "1"}
    assert (await store.stats(CMP))["batch_counts"]["pending"] == 2


async def test_a_stale_version_naming_another_batch_changes_nothing(store: Store) -> None:
    """Equal or lower versions are stale whatever batch they name; no batch is created."""
    log = Log(store)
    await log.apply(contact(1, 2, "btc_x", "completed"))
    before = await store.stats(CMP)
    assert await log.apply(contact(1, 1, "btc_y", "failed"), contact(1, 2, "btc_y", "failed")) == [
        STALE,
        STALE,
    ]
    assert await store.stats(CMP) == before
    assert await listed(store) == ["btc_x"]


async def test_an_upsert_keeps_a_batch_its_contacts_left(store: Store) -> None:
    """A contact-only batch that got its batch.upserted is no longer contact-only."""
    log = Log(store)
    await log.apply(contact(1, 1, "btc_x", "pending"))
    await log.apply(batch("btc_x", 1), contact(1, 2, "btc_y", "pending"))
    assert await listed(store, "in_progress") == ["btc_x"]
    assert await counters(store, "btc_x") == {}


async def test_removing_the_last_contact_removes_a_contact_only_batch(store: Store) -> None:
    """REMOVE_ENTITIES (reconciliation) leaves what applying the rest would have left."""
    log = Log(store)
    await log.apply(contact(1, 1, "btc_x", "pending"), contact(2, 1, "btc_a", "pending"))
    await log.apply(batch("btc_a", 1))
    entities = [("c", keys.digest(cid)) for cid in ("con_1", "con_2")]
    assert await store.remove_entities(CMP, {"dialer.contacts:0": log.offset}, entities) == 2
    assert await listed(store) == ["btc_a"]
    assert not await batches.exists(store.client, CMP, "btc_x")
    assert (await store.stats(CMP))["batch_counts"] == {
        **dict.fromkeys(("pending", "paused", "completed", "cancelled", "expired"), 0),
        "in_progress": 1,
    }


async def test_recount_drops_a_contact_only_batch_no_contact_names(store: Store) -> None:
    """A leftover contact-only batch (as older versions left them) is reported, then gone."""
    log = Log(store)
    await log.apply(contact(1, 1, "btc_x", "pending"), batch("btc_a", 1))
    client = store.client
    await batches.write(client, CMP, "btc_z", {"s": "pending", "v": "0"})
    await client.zadd(keys.batch_index(CMP), {"btc_z": float("inf")})
    await client.zadd(keys.batch_index(CMP, "pending"), {"btc_z": float("inf")})
    await client.hincrby(keys.stats(CMP), "batches:pending", 1)
    ids = ["btc_a", "btc_x", "btc_z"]

    drift = await store.recount(CMP, ids, dry_run=True)
    assert drift is not None
    assert _has(drift, ["btc_z", "s", "pending", ""])
    assert await listed(store) == ["btc_a", "btc_x", "btc_z"]

    await store.recount(CMP, ids, dry_run=False)
    assert await listed(store) == ["btc_a", "btc_x"]
    assert await listed(store, "pending") == ["btc_x"]
    assert not await batches.exists(client, CMP, "btc_z")
    assert (await store.stats(CMP))["batch_counts"]["pending"] == 1
    assert await store.recount(CMP, ids, dry_run=True) == []


async def test_recount_rescales_millisecond_scores(store: Store) -> None:
    """Batch hashes written with millisecond scores (`cms`) get microsecond index scores,
    and move into the batches hash."""
    log = Log(store)
    await log.apply(batch("btc_a", 1, "2026-05-01T08:00:00.002Z"))
    row = await batches.fields(store, CMP, "btc_a")
    del row["created_us"]
    await batches.to_own_hash(store, CMP, "btc_a", {**row, "cms": "1777622400002"})
    await store.client.zadd(keys.batch_index(CMP), {"btc_a": 1777622400002})
    assert await store.recount(CMP, ["btc_a"], dry_run=False)
    assert await store.client.zscore(keys.batch_index(CMP), "btc_a") == 1777622400002000
    assert not await store.client.exists(keys.legacy_batch(CMP, "btc_a"))
    moved = await batches.fields(store, CMP, "btc_a")
    assert moved == {**row, "created_us": "1777622400002000"}


def _has(flat: list[str], quad: list[str]) -> bool:
    return any(flat[i : i + 4] == quad for i in range(0, len(flat), 4))
