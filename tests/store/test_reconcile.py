"""Reconciliation on fakeredis and real valkey: drift is found, reported and repaired."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from processors import StoreUnavailable
from processors.domain.contract import APPLIED, Rejection
from processors.domain.events import parse
from processors.domain.transitions import ContactState
from processors.reconcile.runner import Reconciler
from processors.settings import Settings
from processors.store import keys
from processors.store.client import Store, connect
from processors.store.slices import encode_repair
from tests import batches
from tests.oracle import Expected, check_invariants, comparable_batches
from tests.store.test_apply import apply_events, assert_matches
from tests.streams import random_stream


async def put_contact(store: Store, campaign_id: str, contact_id: str, packed: str) -> None:
    """Write a contact's state by hand (`version|code|retry|batch id`), as Redis stores it."""
    head, _, batch_id = packed.rpartition("|")
    number = await store.client.hget(keys.layout(campaign_id), f"b:{batch_id}")
    assert number is not None, f"{batch_id} has no batch number in {campaign_id}"
    entity = keys.digest(contact_id)
    await store.client.hset(
        await store.entity_key(campaign_id, "c", entity), entity, f"{head}|{number}"
    )


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
        self.committed_offsets: dict[str, int] | None = None
        self.on_committed: Callable[[], Awaitable[None]] | None = None

    async def committed(self) -> dict[str, int]:
        """The simulated worker has committed everything the log holds (unless told)."""
        if self.on_committed is not None:
            await self.on_committed()
            self.on_committed = None
        return self.committed_offsets if self.committed_offsets is not None else self.ends

    async def read(self, progress: Any = None) -> AsyncIterator[list[Rec]]:
        for start in range(0, len(self.records), 50):
            yield self.records[start : start + 50]
            if self.during_read is not None:
                await self.during_read()
                self.during_read = None


def prefix(source: ListSource, size: int) -> ListSource:
    """The log as a reconciliation reading it after `size` records sees it."""
    cut = ListSource([])
    cut.records = source.records[:size]
    cut.ends = {field: 0 for field in source.ends}
    for r in cut.records:
        cut.ends[f"{r.topic}:{r.partition}"] = r.offset + 1
    return cut


async def load(store: Store, source: ListSource, start: int = 0, stop: int | None = None) -> None:
    """Apply the source's records from `start` (to `stop`) the way the worker would."""
    log = []
    for r in source.records[start:stop]:
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
    buckets = [k async for k in client.scan_iter(match=keys.contact_bucket("cmp_1", 0)[:-1] + "*")]
    await client.delete(*rng.sample(buckets, min(3, len(buckets) - 1) or 1))
    records = [k async for k in client.scan_iter(match=keys.record_bucket("cmp_0", 0)[:-1] + "*")]
    await client.delete(rng.choice(records))
    await client.hdel(keys.batches("cmp_0"), "btc_1")
    await client.zrem(keys.batch_index("cmp_1"), "btc_2")
    await put_contact(store, "cmp_0", "con_ghost", "3|a|0|btc_1")
    await batches.change(store, "cmp_0", "btc_1", {"contacts:pending": 1})


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
    await put_contact(store, "cmp_0", "con_new", "1|a|0|btc_0")
    await store.client.hincrby(ghost, "contacts:pending", 1)
    await store.client.hincrby(ghost, "contacts", 1)
    behind = ListSource(events)
    behind.ends = {field: 0 for field in behind.ends}  # the worker is past what was read
    report = await Reconciler(store, behind).run()
    assert report.campaigns[0].extra_deferred
    assert await store.lookup("cmp_0", "c", [keys.digest("con_new")]) != [None]
    stats = await store.stats("cmp_0")
    check_invariants(stats, await store.batches("cmp_0", limit=500))

    await Reconciler(store, source).run()
    assert await store.lookup("cmp_0", "c", [keys.digest("con_new")]) == [None]
    expected = Expected(events)
    assert await store.stats("cmp_0") == expected.stats("cmp_0")
    assert comparable_batches(await store.batches("cmp_0", limit=500)) == expected.batches("cmp_0")


async def test_one_reconciler_at_a_time(valkey_server: Any) -> None:
    """A run while another holds the lock is refused and counted as skipped."""
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


def drift_of(report: Any) -> list[tuple[str, str, Any, Any]]:
    return [(f.scope, f.field, f.found, f.expected) for f in report.fields]


async def test_live_traffic_with_nothing_lost_reports_no_drift(store: Store) -> None:
    """The worker keeps applying past the offsets read: neither a dry run nor a repair
    reports drift (counters are compared with entity state atomically, not with the read)."""
    events = random_stream(random.Random(31), campaigns=2, size=500)
    full = ListSource(events)
    read = prefix(full, 300)
    await load(store, full, stop=380)  # the worker is already past the read

    async def live_traffic() -> None:
        await load(store, full, start=380)

    read.during_read = live_traffic
    dry = await Reconciler(store, read).run(dry_run=True)
    report = await Reconciler(store, read).run()
    for run in (dry, report):
        assert [(c.campaign_id, c.drift, drift_of(c)) for c in run.campaigns] == [
            ("cmp_0", 0, []),
            ("cmp_1", 0, []),
        ]
        assert all(c.worker_caught_up and not c.entities_in_flight for c in run.campaigns)
    # entities created after the read are not removed, and not drift either
    assert report.totals()["extra_unconfirmed"] > 0
    await assert_matches(store, Expected(events))


async def test_lost_states_are_entity_drift_and_only_edited_counters_field_drift(
    store: Store,
) -> None:
    """Entity states lost with their counters intact: the counters were right, so only the
    hand-edited counter is field drift -- the same in the dry run and the repair."""
    events = random_stream(random.Random(8), campaigns=1, size=300)
    source = ListSource(events)
    await load(store, source)
    expected = Expected(events)
    client = store.client
    contacts = sorted((await store.entity_states("cmp_0"))[0])
    lost = contacts[:4]
    for contact in lost:
        assert await client.hdel(await store.entity_key("cmp_0", "c", contact), contact) == 1
    completed = int(await client.hget(keys.stats("cmp_0"), "calls:completed") or 0)
    await client.hincrby(keys.stats("cmp_0"), "calls:completed", 3)

    for dry_run in (True, False):
        (report,) = (await Reconciler(store, source).run(dry_run=dry_run)).campaigns
        assert (report.entities_missing, report.entities_stale) == (len(lost), 0)
        assert drift_of(report) == [("stats", "calls:completed", completed + 3, completed)]
    assert report.fields[0].corrected == completed
    await assert_matches(store, expected)


async def test_what_the_worker_has_not_applied_yet_is_in_flight_not_drift(store: Store) -> None:
    """Lag is not drift: while the worker is behind the read, the differences are reported
    as in flight (and repaired anyway, by version: the worker's own events then change
    nothing)."""
    events = random_stream(random.Random(12), campaigns=1, size=300)
    source = ListSource(events)
    await load(store, source, stop=150)
    source.committed_offsets = {}  # nor has the group committed anything

    for dry_run in (True, False):
        run = await Reconciler(store, source, catch_up_seconds=0.3).run(dry_run=dry_run)
        (report,) = run.campaigns
        assert not report.worker_caught_up
        assert report.entities_in_flight > 0
        assert (report.drift, drift_of(report)) == (0, [])
    await assert_matches(store, Expected(events))
    await load(store, source, start=150)  # the worker gets there: stale, nothing changes
    await assert_matches(store, Expected(events))


async def test_what_the_worker_applies_while_waited_for_is_not_drift(store: Store) -> None:
    """Redis behind the read, the worker catching up while reconcile waits for it: the
    entities are read again, found applied, and reported as nothing."""
    events = random_stream(random.Random(13), campaigns=1, size=300)
    source = ListSource(events)
    await load(store, source, stop=150)
    source.committed_offsets = {}

    async def worker_catches_up() -> None:
        await load(store, source, start=150)

    source.on_committed = worker_catches_up  # runs while the reconciler waits
    (report,) = (await Reconciler(store, source).run(dry_run=True)).campaigns
    assert report.worker_caught_up
    assert (report.drift, report.entities_in_flight, drift_of(report)) == (0, 0, [])
    await assert_matches(store, Expected(events))


async def test_open_streams_hear_of_a_repair_and_only_of_one(store: Store) -> None:
    """A repair that changed counters announces the campaign on its updates channel; a run
    with nothing to repair and a dry run stay silent."""
    events = random_stream(random.Random(3), campaigns=1, size=150)
    source = ListSource(events)
    await load(store, source)
    pubsub = store.client.pubsub()
    await pubsub.psubscribe(keys.UPDATES_PATTERN)
    try:
        await Reconciler(store, source).run()  # nothing to repair
        await store.client.hincrby(keys.stats("cmp_0"), "contacts:pending", 2)
        await Reconciler(store, source).run(dry_run=True)
        await store.announce(["sentinel"])  # published after anything the runs published
        heard = await channels_until(pubsub, keys.updates_channel("sentinel"))
        assert keys.updates_channel("cmp_0") not in heard

        await Reconciler(store, source).run()
        assert keys.updates_channel("cmp_0") in await channels_until(
            pubsub, keys.updates_channel("cmp_0")
        )
    finally:
        await pubsub.aclose()


async def channels_until(pubsub: Any, channel: str, timeout: float = 10.0) -> list[str]:
    """Channels of the messages received up to and including one on `channel`."""
    import asyncio

    heard: list[str] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while channel not in heard:
        assert asyncio.get_running_loop().time() < deadline, f"no message on {channel}: {heard}"
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None:
            heard.append(message["channel"])
    return heard


def contact_change(n: int, contact_id: str, version: int, status: str) -> dict[str, Any]:
    return {
        "event_type": "contact.status_changed",
        "event_id": f"evt_{n}",
        "organization_id": "org_m",
        "campaign_id": "cmp_m",
        "occurred_at": "2026-05-08T09:00:00Z",
        "version": version,
        "batch_id": "btc_m",
        "contact_id": contact_id,
        "status": status,
        "retry_count": 0,
        "follow_up_count": 0,
    }


@pytest.mark.parametrize("dry_run", [True, False])
@pytest.mark.parametrize(
    ("edited", "by"),
    [("contacts:completed", 1), ("contacts:pending", -1), ("contacts:completed", 2)],
)
async def test_a_hand_edit_is_reported_where_a_stale_repair_moves_the_same_counter(
    store: Store, dry_run: bool, edited: str, by: int
) -> None:
    """Redis lost a contact's v2 write with its counters (an older copy: state and counters
    at v1), and a counter the v2 repair also moves was edited by hand -- even by exactly the
    repair's change. Counters are judged against the entity state found, at one cut before
    any repair: the edit is field drift (the contact stale), in the dry run and the repair
    alike; the repair leaves every counter exact."""
    events = [
        contact_change(0, "con_1", 1, "pending"),
        contact_change(1, "con_1", 2, "completed"),
        contact_change(2, "con_2", 1, "pending"),
    ]
    source = ListSource(events, partitions=1)
    await load(store, source, 0, 1)
    await load(store, source, 2, 3)
    await store.client.hset(keys.fence("cmp_m"), "t:0", "1:2")  # the worker applied all
    found = int(await store.client.hget(keys.stats("cmp_m"), edited) or 0)
    await store.client.hincrby(keys.stats("cmp_m"), edited, by)

    run = await Reconciler(store, source, catch_up_seconds=0.5).run(dry_run=dry_run)
    (report,) = run.campaigns
    assert (report.entities_stale, report.entities_missing) == (1, 0)
    implied_after = {"contacts:completed": 1, "contacts:pending": 1}[edited]
    assert [(d.scope, d.field, d.found, d.expected, d.corrected) for d in report.fields] == [
        ("stats", edited, found + by, found, None if dry_run else implied_after)
    ]
    if not dry_run:
        assert report.fixed == 2
        await assert_matches(store, Expected(events))


async def test_an_edit_as_large_as_a_missing_contact_is_reported(store: Store) -> None:
    """A contact missing from an older copy of Redis (counters without it too) and a counter
    edited by that contact's contribution: the counters follow the state found but for the
    edit, so the edit is drift and the contact missing -- not a contact whose state was lost
    while its counts stayed."""
    events = [
        contact_change(0, "con_1", 1, "completed"),
        contact_change(1, "con_2", 1, "completed"),
    ]
    source = ListSource(events, partitions=1)
    await load(store, source, 1, 2)
    await store.client.hset(keys.fence("cmp_m"), "t:0", "1:1")
    await store.client.hincrby(keys.stats("cmp_m"), "contacts:completed", 1)
    for dry_run in (True, False):
        (report,) = (
            await Reconciler(store, source, catch_up_seconds=0.5).run(dry_run=dry_run)
        ).campaigns
        assert report.entities_missing == 1
        assert drift_of(report) == [("stats", "contacts:completed", 2, 1)]
    await assert_matches(store, Expected(events))


async def test_repair_chunks_run_in_turn_through_a_script_flush(store: Store) -> None:
    """`apply_in_turn` (one connection, each call sent before the previous outcome is
    handed over): outcomes arrive in order, one per call, and a script cache flushed
    mid-run (NOSCRIPT) is reloaded and the call sent again; the states land in Redis."""
    contacts = [(f"con_{n}", ContactState(1, "pending", 0, f"btc_{n % 3}")) for n in range(50)]
    chunks = [contacts[n : n + 10] for n in range(0, 50, 10)]
    seen: list[tuple[int, list[int]]] = []

    calls = (encode_repair("cmp_turn", "org_turn", contacts=chunk) for chunk in chunks)
    flushes: list[asyncio.Task[Any]] = []

    def confirmed(index: int, codes: list[int]) -> None:
        seen.append((index, codes))
        if index == 1:  # the scripts go while call 2 runs: a later call meets NOSCRIPT
            flushes.append(asyncio.create_task(store.client.script_flush()))

    await store.apply_in_turn(calls, confirmed)
    await asyncio.gather(*flushes)
    assert [index for index, _ in seen] == list(range(len(chunks)))
    assert all(codes == [APPLIED] * 10 for _, codes in seen)
    assert int(await store.client.hget(keys.stats("cmp_turn"), "contacts")) == 50
    await store.apply_in_turn(iter([]), confirmed)  # nothing to send: nothing happens
    assert len(seen) == len(chunks)


async def test_repair_chunks_with_redis_gone_are_store_unavailable() -> None:
    store = Store(connect(Settings(redis_url="redis://127.0.0.1:1")))
    call = encode_repair("cmp_gone", "org_gone")
    with pytest.raises(StoreUnavailable):
        await store.apply_in_turn(iter([call]), lambda index, codes: None)
    await store.close()
