"""APPLY_SLICE on fakeredis and real valkey: exact under duplicates, replays and reordering."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import pytest

from processors import StoreUnavailable
from processors.domain.contract import APPLIED, REPLAYED, STALE, TENANT_MISMATCH
from processors.domain.events import Event
from processors.domain.transitions import CampaignState, apply
from processors.store import keys
from processors.store.client import Store
from processors.store.lua import EVENT_SEP, FIELD_SEP
from processors.store.slices import encode, group
from tests.oracle import Expected, check_invariants, comparable_batches
from tests.streams import entity_event, parsed, random_stream


def as_log(
    events: list[dict[str, Any]], rng: random.Random, partitions: int = 3
) -> list[tuple[str, int, int, Event]]:
    """Spread events over topic partitions with increasing offsets, like Kafka would."""
    next_offset = [0] * partitions
    log = []
    for event in events:
        p = rng.randrange(partitions)
        log.append(("dialer.contacts", p, next_offset[p], parsed(event)))
        next_offset[p] += 1
    return log


def epochs(epoch: int = 1) -> defaultdict[tuple[str, int], int]:
    """The same epoch for every partition."""
    return defaultdict(lambda: epoch)


async def apply_events(
    store: Store, log: list[tuple[str, int, int, Event]], epoch: int = 1
) -> list[list[int]]:
    """Apply `(topic, partition, offset, event)` tuples as one fetched batch."""
    return await store.apply(group(log), epochs(epoch))


async def apply_log(
    store: Store, log: list[tuple[str, int, int, Event]], rng: random.Random, epoch: int = 1
) -> list[list[int]]:
    """Apply in random fetch-sized chunks, replaying some chunks as after a crash."""
    outcomes = []
    position = 0
    while position < len(log):
        chunk = log[position : position + rng.randint(1, 40)]
        result = await apply_events(store, chunk, epoch)
        outcomes.extend(result)
        if rng.random() < 0.3:  # a crash before the commit: the same chunk comes again
            replay = await apply_events(store, chunk, epoch)
            assert all(code == REPLAYED for codes in replay for code in codes)
        position += len(chunk)
    return outcomes


async def assert_matches(store: Store, expected: Expected) -> None:
    for campaign in expected.campaigns:
        stats = await store.stats(campaign)
        assert stats == expected.stats(campaign), campaign
        batches = await store.batches(campaign, limit=500)
        assert comparable_batches(batches) == expected.batches(campaign)
        check_invariants(stats, batches)
        assert await store.campaign_owner(campaign) == expected.owner[campaign]


@pytest.mark.parametrize("seed", range(6))
async def test_random_streams_are_exact(store: Store, seed: int) -> None:
    """Shuffled streams with duplicates and stale versions, applied in chunks with replays."""
    rng = random.Random(seed)
    events = random_stream(rng, campaigns=3, size=300)
    await apply_log(store, as_log(events, rng), rng)
    await assert_matches(store, Expected(events))


async def test_lua_outcomes_match_the_pure_model(store: Store) -> None:
    """Event for event, the script decides what the model decides."""
    rng = random.Random(7)
    events = random_stream(rng, campaigns=2, size=200)
    log = [("dialer.contacts", 0, offset, parsed(e)) for offset, e in enumerate(events)]
    codes = [c for s in await apply_events(store, log) for c in s]
    states: dict[str, CampaignState] = {}
    by_campaign = [
        apply(states.setdefault(e.campaign_id, CampaignState()), e)
        for part in group(log)
        for _, _, _, e in part.items
    ]
    assert codes == by_campaign


async def test_new_epoch_reapplies_what_an_old_fence_would_skip(store: Store) -> None:
    """After a broker wipe, offsets restart: a new epoch stops the old fence from skipping."""
    first = parsed(entity_event("cmp_e", "org_e", "contact", 1, 1))
    second = parsed(entity_event("cmp_e", "org_e", "contact", 1, 2))
    assert await apply_events(store, [("dialer.contacts", 0, 5, first)]) == [[APPLIED]]
    wiped = [("dialer.contacts", 0, 0, second)]
    assert await apply_events(store, wiped) == [[REPLAYED]]
    assert await apply_events(store, wiped, epoch=2) == [[APPLIED]]
    stats = await store.stats("cmp_e")
    assert sum(stats["contact_counts"].values()) == 1


async def test_tenant_mismatch_changes_nothing(store: Store) -> None:
    """Another organization naming the campaign is refused; counters stay as they were."""
    own = parsed(entity_event("cmp_t", "org_a", "contact", 1, 1))
    await apply_events(store, [("t", 0, 0, own)])
    before = await store.stats("cmp_t")
    intruder = parsed(entity_event("cmp_t", "org_b", "contact", 2, 1))
    assert await apply_events(store, [("t", 0, 1, intruder)]) == [[TENANT_MISMATCH]]
    assert await store.stats("cmp_t") == before
    assert await store.campaign_owner("cmp_t") == "org_a"


@pytest.mark.parametrize("damage", ["a field too many", "a field too few", "an empty event"])
async def test_a_malformed_event_fails_the_call_before_it_is_written(
    store: Store, damage: str
) -> None:
    """The script reads each event by its field count: an encoding of another shape (none
    the encoder makes) fails the call, and nothing of that event reaches Redis."""
    events = [parsed(entity_event("cmp_m", "org_m", "contact", n, 1)) for n in range(3)]
    (call,) = [
        encode(part, epochs()) for part in group([("t", 0, n, e) for n, e in enumerate(events)])
    ]
    keys_, argv = call
    first, second, third = argv[-1].split(EVENT_SEP)
    fields = second.split(FIELD_SEP)
    second = {
        "a field too many": FIELD_SEP.join([*fields[:-1], "x", fields[-1]]),
        "a field too few": FIELD_SEP.join(fields[:-1]),
        "an empty event": "",
    }[damage]
    damaged = (keys_, [*argv[:-1], EVENT_SEP.join([first, second, third])])
    with pytest.raises(StoreUnavailable, match="malformed event"):
        await store.apply_calls([damaged])
    digest = keys.digest(events[1].contact_id)  # type: ignore[attr-defined]
    pattern = keys.contact_bucket("cmp_m", 0)[:-1] + "*"
    buckets = [name async for name in store.client.scan_iter(match=pattern)]
    assert buckets, "the first event is written before the second is read"
    assert not [name for name in buckets if await store.client.hexists(name, digest)]


async def test_a_replayed_tenant_mismatch_keeps_its_verdict(store: Store) -> None:
    """A crash after the script but before the dead letter: the retry is told again that
    the event is foreign (so it is dead-lettered), and the tallies count it once."""
    own = parsed(entity_event("cmp_t", "org_a", "contact", 1, 1))
    intruder = parsed(entity_event("cmp_t", "org_b", "contact", 2, 1))
    newer = parsed(entity_event("cmp_t", "org_a", "contact", 1, 2))
    chunk = [("t", 0, 0, own), ("t", 0, 1, intruder), ("t", 0, 2, newer)]
    assert await apply_events(store, chunk) == [[APPLIED, TENANT_MISMATCH, APPLIED]]
    before = await store.stats("cmp_t")
    for _ in range(2):
        assert await apply_events(store, chunk) == [[REPLAYED, TENANT_MISMATCH, REPLAYED]]
    assert await store.stats("cmp_t") == before
    tallies = await store.stats_fields("cmp_t")
    assert tallies["events:applied"] == "2"
    assert tallies["events:tenant_mismatch"] == "1"
    assert tallies["events:replayed"] == "6"


async def test_batches_created_microseconds_apart_list_in_order(store: Store) -> None:
    """The index score is the full-precision instant, whatever zone created_at is written
    in; equal instants list by batch_id; created_at reads back in UTC."""
    created = {
        "btc_1": "2026-05-01T10:00:00.000002+02:00",  # 08:00:00.000002Z
        "btc_2": "2026-05-01T08:00:00.000001Z",
        "btc_3": "2026-05-01T02:30:00.000001-05:30",  # 08:00:00.000001Z
        "btc_4": "2026-05-01T08:00:00",  # naive: UTC
    }
    events = []
    for n, (batch_id, at) in enumerate(created.items()):
        event = entity_event("cmp_u", "org_u", "batch", n, 1)
        event.update(batch_id=batch_id, created_at=at)
        events.append(("t", 0, n, parsed(event)))
    await apply_events(store, events)
    rows = await store.batches("cmp_u")
    assert [(b["batch_id"], b["created_at"]) for b in rows] == [
        ("btc_4", "2026-05-01T08:00:00Z"),
        ("btc_2", "2026-05-01T08:00:00.000001Z"),
        ("btc_3", "2026-05-01T08:00:00.000001Z"),
        ("btc_1", "2026-05-01T08:00:00.000002Z"),
    ]
    scores = await store.client.zrange(keys.batch_index("cmp_u"), 0, -1, withscores=True)
    assert [score for _, score in scores] == [
        1777622400000000,
        1777622400000001,
        1777622400000001,
        1777622400000002,
    ]


async def test_script_cache_flush_is_survived(store: Store) -> None:
    """NOSCRIPT: the script is loaded again and the call goes through once."""
    event = parsed(entity_event("cmp_s", "org_s", "contact", 1, 1))
    await store.client.script_flush()
    assert await apply_events(store, [("t", 0, 0, event)]) == [[APPLIED]]
    newer = parsed(entity_event("cmp_s", "org_s", "contact", 1, 2))
    await store.client.script_flush()
    assert await apply_events(store, [("t", 0, 1, newer), ("t", 0, 2, newer)]) == [[APPLIED, STALE]]


async def test_batches_order_filter_and_paging(store: Store) -> None:
    """Ordered by (created_at, batch_id), undated last; status filter; skip/limit."""
    events = []
    for index, (created, status) in enumerate(
        [("2026-05-03T00:00:00Z", "completed"), ("2026-05-01T00:00:00Z", "in_progress"),
         ("2026-05-01T00:00:00Z", "completed"), ("2026-05-02T00:00:00Z", "paused")]
    ):  # fmt: skip
        event = entity_event("cmp_b", "org_b", "batch", index, 1)
        event.update(batch_id=f"btc_{'zyxw'[index]}", created_at=created, status=status)
        events.append(event)
    orphan = entity_event("cmp_b", "org_b", "contact", 9, 1)
    orphan["batch_id"] = "btc_a_orphan"
    events.append(orphan)
    log = [("t", 0, offset, parsed(e)) for offset, e in enumerate(events)]
    await apply_events(store, log)
    ids = [b["batch_id"] for b in await store.batches("cmp_b")]
    assert ids == ["btc_x", "btc_y", "btc_w", "btc_z", "btc_a_orphan"]
    orphan_row = (await store.batches("cmp_b", skip=4, limit=1))[0]
    assert orphan_row["status"] == "pending" and orphan_row["created_at"] is None
    assert orphan_row["total_contacts"] == 1
    assert [b["batch_id"] for b in await store.batches("cmp_b", status="completed")] == [
        "btc_x",
        "btc_z",
    ]
    assert [b["batch_id"] for b in await store.batches("cmp_b", skip=1, limit=2)] == [
        "btc_y",
        "btc_w",
    ]
    assert (await store.stats("cmp_b"))["batch_counts"]["pending"] == 1


async def test_every_key_of_a_campaign_shares_one_hash_tag(store: Store) -> None:
    """All keys a campaign writes carry `{campaign_id}`, so one script call is one slot."""
    rng = random.Random(3)
    events = [e for e in random_stream(rng, campaigns=1, size=60)]
    await apply_log(store, as_log(events, rng), rng)
    written = [k async for k in store.client.scan_iter(match="ds:*")]
    campaign_keys = [
        k for k in written if not k.startswith(("ds:org:", "ds:campaigns", "ds:tokens", "ds:log:"))
    ]
    assert campaign_keys
    assert all(k.startswith("ds:{cmp_0}:") for k in campaign_keys)
    assert keys.stats("cmp_0") in campaign_keys


def stats_of(client: Any, expected: Expected) -> bool:
    """Whether a synchronous Redis client's counters equal the oracle for every campaign."""
    from processors.domain.views import stats_view

    return all(
        stats_view(campaign, client.hgetall(keys.stats(campaign))) == expected.stats(campaign)
        for campaign in expected.campaigns
    )


async def test_batches_at_the_ends_of_the_time_range_list_by_the_microsecond(
    store: Store,
) -> None:
    """created_at is accepted from 1970-01-01T00:00Z up to 2200: at both ends, batches
    created one microsecond apart list in created_at order (the index score, microseconds
    since the epoch in a double, is exact there; beyond, such events are dead letters)."""
    created = {
        "btc_a": "2199-12-31T23:59:59.999999Z",
        "btc_b": "2199-12-31T23:59:59.999998Z",
        "btc_c": "1970-01-01T00:00:00.000001Z",
        "btc_d": "1970-01-01T00:00:00Z",
    }
    events = []
    for n, (batch_id, at) in enumerate(created.items()):
        event = entity_event("cmp_e", "org_e", "batch", n, 1)
        event.update(batch_id=batch_id, created_at=at)
        events.append(("t", 0, n, parsed(event)))
    await apply_events(store, events)
    rows = await store.batches("cmp_e")
    assert [b["batch_id"] for b in rows] == ["btc_d", "btc_c", "btc_b", "btc_a"]
    scores = await store.client.zrange(keys.batch_index("cmp_e"), 0, -1, withscores=True)
    assert [int(score) for _, score in scores] == [0, 1, 7258118399999998, 7258118399999999]
