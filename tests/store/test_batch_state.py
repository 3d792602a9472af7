"""Batch states packed into the campaign's batches hash, on fakeredis and real valkey (Lua
5.4 and 5.1 number printing): any count the event contract admits comes back exact through
the page, the store and a recount, and this suite's own packing of the documented format
reads back as the scripts' does."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.domain.batchstate import unpack_batch
from processors.domain.contract import MAX_VERSION
from processors.store import keys
from processors.store.client import Store
from tests import batches
from tests.oracle import Expected, comparable_batches
from tests.store.test_apply import apply_events
from tests.streams import entity_event, parsed

CMP, ORG = "cmp_p", "org_p"

#: Retry counts and versions across the range, past where a double prints in exponent form.
BIG = st.sampled_from([0, 1, 9, 10**14 - 1, 10**14, 123_456_789_012_345, MAX_VERSION])


def contact(index: int, version: int, batch_id: str, status: str, retry: int) -> dict[str, Any]:
    event = entity_event(CMP, ORG, "contact", index, version)
    event.update(batch_id=batch_id, status=status, retry_count=retry)
    return event


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    retries=st.lists(BIG, min_size=1, max_size=6),
    total=BIG,
    version=BIG.filter(bool),
    seed=st.integers(0, 2**32),
)
async def test_any_count_comes_back_exact(
    store: Store, retries: list[int], total: int, version: int, seed: int
) -> None:
    await store.client.flushall()
    rng = random.Random(seed)
    upsert = entity_event(CMP, ORG, "batch", 0, version)
    upsert.update(batch_id="btc_a", total_contacts=total, occurred_at="2026-05-08T09:00:00Z")
    events = [upsert]
    for n, retry in enumerate(retries):
        status = rng.choice(["retrying", "retrying", "completed"])
        events.append(contact(n, 1, rng.choice(["btc_a", "btc_b"]), status, retry))
    rng.shuffle(events)
    await apply_events(store, [("t", 0, n, parsed(e)) for n, e in enumerate(events)])
    expected = Expected(events).batches(CMP)
    assert comparable_batches(await store.batches(CMP, limit=10)) == expected
    assert await store.recount(CMP, dry_run=True) == []
    for batch_id in ("btc_a", "btc_b"):
        row = await batches.fields(store, CMP, batch_id)
        if row:  # what the scripts packed is what this suite packs from the fields
            packed = await store.client.hget(keys.batches(CMP), batch_id)
            assert packed == batches.pack(row)
            assert unpack_batch(packed) == row
