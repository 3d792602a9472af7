"""Reconciliation on fakeredis and real valkey: drift is found, reported and repaired."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from processors.domain.contract import Rejection
from processors.domain.events import parse
from processors.reconcile.runner import Reconciler
from processors.store import keys
from processors.store.client import Store
from tests.oracle import Expected, check_invariants, comparable_batches
from tests.store.test_apply import apply_events, assert_matches
from tests.streams import random_stream


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class ListSource:
    """An event log in memory; `during_read` runs between its batches (live traffic)."""

    def __init__(self, events: list[dict[str, Any]], partitions: int = 3, seed: int = 0) -> None:
        rng = random.Random(seed)
        self.records: list[Rec] = []
        offsets = [0] * partitions
        for event in events:
            p = rng.randrange(partitions)
            self.records.append(Rec("t", p, offsets[p], None, json.dumps(event).encode()))
            offsets[p] += 1
        self.ends = {f"t:{p}": offsets[p] for p in range(partitions)}
        self.during_read: Callable[[], Awaitable[None]] | None = None

    async def read(self, progress: Any = None) -> AsyncIterator[list[Rec]]:
        for start in range(0, len(self.records), 50):
            yield self.records[start : start + 50]
            if self.during_read is not None:
                await self.during_read()
                self.during_read = None


async def load(store: Store, source: ListSource, start: int = 0) -> None:
    """Apply the source's records from `start` the way the worker would."""
    log = []
    for r in source.records[start:]:
        event = parse(r.value or b"")
        assert not isinstance(event, Rejection)
        log.append((r.topic, r.partition, r.offset, event))
    await apply_events(store, log)


async def snapshot(store: Store, expected: Expected) -> list[Any]:
    return [(await store.stats(c), await store.batches(c, limit=500)) for c in expected.campaigns]


async def corrupt(store: Store, rng: random.Random) -> None:
    """Hand-edited counters, deleted keys of every kind, an invented entity."""
    client = store.client
    await client.hincrby(keys.stats("cmp_0"), "contacts:completed", 7)
    await client.hincrby(keys.stats("cmp_0"), "calls:busy", -2)
    await client.hset(keys.stats("cmp_1"), "retry:9", 4)
    await client.delete(keys.stats("cmp_2"))
    buckets = [k async for k in client.scan_iter(match="ds:{cmp_1}:c:*")]
    await client.delete(*rng.sample(buckets, 3))
    records = [k async for k in client.scan_iter(match="ds:{cmp_0}:r:*")]
    await client.delete(rng.choice(records))
    await client.delete(keys.batch("cmp_0", "btc_1"))
    await client.zrem(keys.batch_index("cmp_1"), "btc_2")
    await client.hset(keys.contact_state("cmp_0", "con_ghost"), "con_ghost", "3|a|0|btc_1")
    await client.hincrby(keys.batch("cmp_0", "btc_1"), "contacts:pending", 1)


async def test_corruption_is_reported_by_dry_run_and_repaired(store: Store) -> None:
    """Dry-run reports without writing; the real run restores every campaign exactly."""
    events = random_stream(random.Random(21), campaigns=3, size=400)
    expected = Expected(events)
    source = ListSource(events)
    await load(store, source)
    await corrupt(store, random.Random(1))

    before = await snapshot(store, expected)
    dry = await Reconciler(store, source).run(dry_run=True)
    assert await snapshot(store, expected) == before
    assert dry.totals()["campaigns_with_drift"] == 3
    by_campaign = {c.campaign_id: c for c in dry.campaigns}
    found = {(d.scope, d.field): d for d in by_campaign["cmp_0"].fields}
    completed = found[("stats", "contacts:completed")]
    assert completed.found == completed.expected + 7
    assert by_campaign["cmp_0"].entities_extra == 1
    assert by_campaign["cmp_1"].entities_missing > 0

    report = await Reconciler(store, source).run()
    await assert_matches(store, expected)
    assert report.totals()["campaigns_with_drift"] == 3
    fixed = {(d.scope, d.field): d for d in report.campaigns[0].fields}
    assert fixed[("stats", "contacts:completed")].corrected == completed.expected

    again = await Reconciler(store, source).run()
    assert again.totals()["campaigns_with_drift"] == 0


async def test_flushall_is_rebuilt_from_the_source(store: Store) -> None:
    """Everything lost: one run rebuilds counters, states, batches and owners."""
    events = random_stream(random.Random(5), campaigns=3, size=300)
    expected = Expected(events)
    source = ListSource(events)
    await load(store, source)
    await store.client.flushall()
    report = await Reconciler(store, source).run()
    await assert_matches(store, expected)
    assert report.totals()["entities_missing"] > 0
    for campaign in expected.campaigns:
        stored = json.loads(await store.client.get(keys.reconciliation(campaign)))
        assert stored["campaign_id"] == campaign and stored["drift"] > 0


async def test_repair_is_exact_while_the_worker_keeps_applying(store: Store) -> None:
    """Events applied between the source read and the repair are neither lost nor doubled."""
    rng = random.Random(9)
    events = random_stream(rng, campaigns=2, size=300)
    full = ListSource(events)
    early = ListSource([])
    early.records = full.records[:200]
    early.ends = {}
    for r in early.records:
        early.ends[f"t:{r.partition}"] = r.offset + 1
    await load(store, early)
    await store.client.flushall()

    async def live_traffic() -> None:  # the worker applies the rest mid-run
        await load(store, full, start=200)

    early.during_read = live_traffic
    await Reconciler(store, early).run()
    await assert_matches(store, Expected(events))


async def test_extra_entities_wait_while_the_worker_is_ahead(store: Store) -> None:
    """An entity the source lacks may be newer than the read: it is only removed when safe."""
    events = random_stream(random.Random(4), campaigns=1, size=120)
    source = ListSource(events)
    await load(store, source)
    ghost = "ds:{cmp_0}:stats"
    await store.client.hset(keys.contact_state("cmp_0", "con_new"), "con_new", "1|a|0|btc_0")
    await store.client.hincrby(ghost, "contacts:pending", 1)
    await store.client.hincrby(ghost, "contacts", 1)
    behind = ListSource(events)
    behind.ends = {field: 0 for field in behind.ends}  # the worker is past what was read
    report = await Reconciler(store, behind).run()
    assert report.campaigns[0].extra_deferred
    assert await store.client.hget(keys.contact_state("cmp_0", "con_new"), "con_new")
    stats = await store.stats("cmp_0")
    check_invariants(stats, await store.batches("cmp_0", limit=500))

    await Reconciler(store, source).run()
    assert await store.client.hget(keys.contact_state("cmp_0", "con_new"), "con_new") is None
    expected = Expected(events)
    assert await store.stats("cmp_0") == expected.stats("cmp_0")
    assert comparable_batches(await store.batches("cmp_0", limit=500)) == expected.batches("cmp_0")


async def test_one_reconciler_at_a_time(valkey_server: Any) -> None:
    """A run while another holds the lock is refused and counted as skipped."""
    import pytest
    import redis.asyncio as aioredis

    from processors import metrics
    from processors.reconcile.cli import LOCK_KEY, AlreadyRunning, reconcile_once
    from processors.settings import Settings

    client = aioredis.Redis.from_url(valkey_server.url)
    lock = client.lock(LOCK_KEY, timeout=30)
    assert await lock.acquire()
    skipped = metrics.RECONCILE_RUNS.labels("skipped")._value.get()
    try:
        settings = Settings(redis_url=valkey_server.url, kafka_bootstrap_servers="127.0.0.1:1")
        with pytest.raises(AlreadyRunning):
            await reconcile_once(settings, campaign=None, dry_run=True, console=None)
        assert metrics.RECONCILE_RUNS.labels("skipped")._value.get() == skipped + 1
    finally:
        await lock.release()
        await client.aclose()
