"""Time series of call records by event time, on fakeredis and real valkey: any delivery of
an event set -- permuted, duplicated, chunked, with corrections that change the minute, the
outcome or the duration -- leaves the buckets a simple oracle computes from the latest
versions; removals and the recount keep them exact."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.reconcile.runner import Reconciler
from processors.store import keys
from processors.store.client import Store
from tests.oracle import latest
from tests.store.test_apply import apply_events
from tests.store.test_reconcile import ListSource, load
from tests.streams import parsed

CMP, ORG = "cmp_ts", "org_ts"
SLOTS = ("completed", "failed", "busy", "no_answer")
#: A fixed "recent" hour: inside both retentions whenever the tests run.
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)


def record(index: int, version: int, rng: random.Random) -> dict[str, Any]:
    """A call record's version: outcome, minute and duration all may change with it."""
    occurred = BASE + timedelta(minutes=rng.randrange(0, 180), seconds=rng.randrange(60))
    event = {
        "event_id": f"r{index}.{version}", "event_type": "call_record.completed",
        "organization_id": ORG, "campaign_id": CMP, "version": version,
        "occurred_at": occurred.isoformat().replace("+00:00", "Z"),
        "batch_id": "btc_1", "contact_id": f"con_{index % 9}", "execution_id": f"exe_{index}",
        "call_status": rng.choice(SLOTS), "is_follow_up": rng.random() < 0.3, "retry_index": 0,
    }  # fmt: skip
    if rng.random() < 0.8:
        event["duration_seconds"] = round(rng.uniform(0, 400), rng.choice((0, 1, 3)))
    return event


def oracle(events: list[dict[str, Any]], step_ms: int) -> dict[int, tuple[int, ...]]:
    """Buckets from the latest version of each call record, by plain arithmetic."""
    sums: defaultdict[int, list[int]] = defaultdict(lambda: [0] * 6)
    for event in latest(events).values():
        at = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
        ms = int(at.timestamp() * 1000)
        bucket = sums[ms - ms % step_ms]
        bucket[SLOTS.index(event["call_status"])] += 1
        bucket[4] += int(event["is_follow_up"])
        bucket[5] += round(event.get("duration_seconds", 0) * 1000)
    return {start: tuple(v) for start, v in sorted(sums.items())}


async def deliver(store: Store, events: list[dict[str, Any]], rng: random.Random) -> None:
    position, offset = 0, 0
    while position < len(events):
        chunk = events[position : position + rng.randint(1, 60)]
        log = [("dialer.call_records", 0, offset + n, parsed(e)) for n, e in enumerate(chunk)]
        await apply_events(store, log)
        offset += len(chunk)
        position += len(chunk)


def stream(rng: random.Random, records: int) -> list[dict[str, Any]]:
    events = [record(i, v, rng) for i in range(records) for v in range(1, rng.randint(1, 3) + 1)]
    events += [dict(e) for e in rng.sample(events, len(events) // 5)]  # duplicates
    rng.shuffle(events)
    return events


async def stored(store: Store) -> tuple[dict[int, tuple[int, ...]], dict[int, tuple[int, ...]]]:
    start = int(BASE.timestamp() * 1000) - 86_400_000
    end = start + 3 * 86_400_000
    return await store.series(CMP, "m", start, end), await store.series(CMP, "q", start, end)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**32), records=st.integers(1, 120))
async def test_any_delivery_leaves_the_oracles_buckets(
    store: Store, seed: int, records: int
) -> None:
    rng = random.Random(seed)
    events = stream(rng, records)
    await store.client.flushall()
    await deliver(store, events, rng)
    minutes, quarters = await stored(store)
    assert minutes == oracle(events, 60_000)
    assert quarters == oracle(events, 900_000)
    # replayed as a whole (after a crash): nothing moves
    await deliver(store, events, rng)
    assert await stored(store) == (minutes, quarters)


async def test_buckets_expire_with_their_retention_and_old_events_write_none(store: Store) -> None:
    rng = random.Random(1)
    old = record(1, 1, rng)
    old["occurred_at"] = (BASE - timedelta(days=410)).isoformat().replace("+00:00", "Z")
    recent = record(2, 1, rng)
    await deliver(store, [old, recent], rng)
    assert await store.client.exists(keys.quarter_series(CMP, int(BASE.timestamp()) // 86_400))
    members = await store.client.zrange(keys.series_index(CMP), 0, -1)
    assert all(int(m[1:]) >= int(BASE.timestamp()) // 86_400 - 1 for m in members if m[0] == "q")
    for member in members:
        number = int(member[1:])
        key = (keys.minute_series if member[0] == "m" else keys.quarter_series)(CMP, number)
        ttl = await store.client.pttl(key)
        assert 0 < ttl <= keys.QUARTER_RETENTION_MS + 86_400_000
    stats = await store.stats(CMP)
    assert stats["call_counters"][f"{old['call_status']}_calls"] >= 1  # counted all the same


async def test_the_recount_finds_and_repairs_series_drift(store: Store) -> None:
    rng = random.Random(7)
    events = stream(rng, 80)
    await deliver(store, events, rng)
    assert await store.recount(CMP, dry_run=True, budget=15) == []
    minute = int(BASE.timestamp()) // 3600
    key = keys.minute_series(CMP, minute)
    fields = await store.client.hgetall(key)
    field, packed = sorted(fields.items())[0]
    await store.client.hset(key, field, "9|9|9|9|9|9")
    await store.client.hset(key, "59" if field != "59" else "58", "1|0|0|0|0|0")
    out = await store.recount(CMP, dry_run=True, budget=15)
    quads = {tuple(out[i : i + 4]) for i in range(0, len(out), 4)}
    other = "59" if field != "59" else "58"
    before = [int(v) for v in fields.get(other, "0|0|0|0|0|0").split("|")]
    scope, want = f"series:m{minute}", [int(v) for v in packed.split("|")]
    expected = {
        (scope, f"{field}:{slot}", "9", str(want[slot - 1]))
        for slot in range(1, 7)
        if want[slot - 1] != 9
    }
    edited = [1, 0, 0, 0, 0, 0]
    expected |= {
        (scope, f"{other}:{slot}", str(edited[slot - 1]), str(before[slot - 1]))
        for slot in range(1, 7)
        if edited[slot - 1] != before[slot - 1]
    }
    assert quads == expected
    await store.recount(CMP, dry_run=False)
    assert await stored(store) == (oracle(events, 60_000), oracle(events, 900_000))
    assert await store.recount(CMP, dry_run=True) == []


async def test_removing_a_call_record_takes_it_out_of_its_buckets(store: Store) -> None:
    rng = random.Random(3)
    events = stream(rng, 30)
    await deliver(store, events, rng)
    gone = "exe_4"
    removed = await store.remove_entities(
        CMP, {"dialer.call_records:0": 10**9}, [("r", keys.digest(gone))]
    )
    assert removed == 1
    rest = [e for e in events if e["execution_id"] != gone]
    assert await stored(store) == (oracle(rest, 60_000), oracle(rest, 900_000))


async def test_reconciliation_rebuilds_the_series_from_the_source(store: Store) -> None:
    """Lost call-record states, a flushed series hash and a hand edit: one run from the
    log puts every bucket back to what the events imply."""
    rng = random.Random(11)
    events = stream(rng, 60)
    source = ListSource(events)
    await load(store, source)
    assert (await stored(store))[0] == oracle(events, 60_000)
    hour = int(BASE.timestamp()) // 3600 + 1
    await store.client.delete(keys.minute_series(CMP, hour))
    await store.client.hset(keys.quarter_series(CMP, hour // 24), "0", "5|0|0|0|0|0")
    _, records = await store.entity_states(CMP)
    lost = sorted(records)[:5]
    for entity in lost:
        await store.client.hdel(await store.entity_key(CMP, "r", entity), entity)

    report = await Reconciler(store, source).run()
    (campaign,) = report.campaigns
    assert campaign.entities_missing == len(lost)
    series = {(f.scope, f.field.split(":")[0]) for f in campaign.fields if "series" in f.scope}
    edited = {(f"series:m{hour}", None), (f"series:q{hour // 24}", "0")}
    assert series and all(
        (scope, None) in edited or (scope, name) in edited for scope, name in series
    )
    assert await stored(store) == (oracle(events, 60_000), oracle(events, 900_000))
    again = await Reconciler(store, source).run(dry_run=True)
    assert again.campaigns[0].drift == 0


async def test_a_bucket_edited_out_of_shape_is_read_on_its_own(store: Store) -> None:
    """Values are parsed a whole hash at once; a field that is not a slot with six plain
    integers (an edit by hand) is left out, and never shifts its neighbours' numbers."""
    hour = 490_000
    key = keys.minute_series(CMP, hour)
    start = hour * 3_600_000
    good = {start + 60_000: (1, 0, 0, 0, 0, 100), start + 120_000: (0, 2, 0, 0, 1, -5)}
    await store.client.hset(key, mapping={"1": "1|0|0|0|0|100", "2": "0|2|0|0|1|-5"})
    assert await store.series(CMP, "m", start, start + 3_600_000) == good
    edits = [
        {"0": "1|2|3|4|5", "3": "1|2|3|4|5|6|7"},  # 5 + 7 parts: twelve in all
        {"1,4": "1|2|3|4|5|6"},
        {"": "1|2|3|4|5|6"},
        {"5": "1||2|3|4|5"},
        {"6": "1.0|0|0|0|0|0"},
        {"8": "1],[2|0|0|0|0|0"},
    ]
    for edit in edits:
        await store.client.hset(key, mapping=edit)
        assert await store.series(CMP, "m", start, start + 3_600_000) == good, edit
        await store.client.hdel(key, *edit)
    await store.client.hset(key, "07", "0|0|0|1|0|7")  # a slot written another way
    assert await store.series(CMP, "m", start, start + 3_600_000) == {
        **good,
        start + 7 * 60_000: (0, 0, 0, 1, 0, 7),
    }


async def test_one_reconcile_moves_old_days_to_the_new_retention(store: Store) -> None:
    """After an upgrade from 36 days: a day kept with the old expiry gets the 401-day one,
    and a day 100 days back, expired under the old retention, is rebuilt from the call
    records' states; a second run finds nothing."""
    rng = random.Random(36)
    old_day = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    events = []
    for n, days in enumerate((20, 20, 100, 100, 100)):
        event = record(900 + n, 1, rng)
        event["occurred_at"] = (old_day - timedelta(days=days)).isoformat().replace("+00:00", "Z")
        events.append(event)
    source = ListSource(events)
    await load(store, source)
    day20 = int((old_day - timedelta(days=20)).timestamp()) // 86_400
    day100 = int((old_day - timedelta(days=100)).timestamp()) // 86_400
    # as the previous release left them: day 20 expiring 36 days after its end, day 100 gone
    await store.client.pexpireat(keys.quarter_series(CMP, day20), (day20 + 1 + 36) * 86_400_000)
    await store.client.delete(keys.quarter_series(CMP, day100))
    await Reconciler(store, source).run()
    for day in (day20, day100):
        ttl = await store.client.pttl(keys.quarter_series(CMP, day))
        expires = (day + 1) * 86_400_000 + keys.QUARTER_RETENTION_MS
        now = int(datetime.now(UTC).timestamp() * 1000)
        assert abs(now + ttl - expires) < 60_000, (day, ttl)
    span = (day100 * 86_400_000, (day20 + 1) * 86_400_000)
    assert await store.series(CMP, "q", *span) == oracle(events, 900_000)
    again = await Reconciler(store, source).run(dry_run=True)
    assert again.campaigns[0].drift == 0
