"""Buckets that grow with the campaign, on fakeredis and real valkey: linear-hashing splits
inside the apply script keep every counter exact and every bucket compact; a chunked
recount stays exact while the worker applies (and splits) between its calls; a Redis of
the fixed 16,384-bucket layout is migrated without losing anything."""

from __future__ import annotations

import asyncio
import random
import zlib
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from processors.cli import cli
from processors.domain.contract import APPLIED, CALL_CODES, CONTACT_CODES, STALE
from processors.domain.transitions import (
    CampaignState,
    apply,
    batch_counters,
    stats_counters,
    unpack_contact,
    unpack_record,
)
from processors.store import keys
from processors.store.client import Store
from processors.store.lua import RECOUNT_BEGIN, RECOUNT_STEP, campaign_keys
from processors.store.slices import group
from processors.tools.embedded import Valkey
from tests import batches
from tests.oracle import Expected, comparable_batches
from tests.store.test_apply import apply_events
from tests.streams import entity_event, parsed

CMP, ORG = "cmp_g", "org_g"


def event(kind: str, index: int, version: int) -> dict[str, Any]:
    """An entity's version; a contact's batch depends on the version (so versions move it)."""
    raw = entity_event(CMP, ORG, kind, index, version)
    if kind == "contact":
        raw["batch_id"] = f"btc_{(index + version) % 5}"
    return raw


def stream(rng: random.Random, contacts: int, records: int) -> list[dict[str, Any]]:
    """Every entity in 1-3 versions, plus batches, duplicates, shuffled."""
    events = [event("batch", b, rng.randint(1, 2)) for b in range(4)]
    for kind, count in (("contact", contacts), ("record", records)):
        for index in range(count):
            events += [event(kind, index, v) for v in range(1, rng.randint(1, 3) + 1)]
    events += rng.sample(events, len(events) // 10)
    rng.shuffle(events)
    return events


async def deliver(store: Store, events: list[dict[str, Any]], rng: random.Random) -> None:
    """Random fetch-sized slices over three partitions."""
    offsets = [0, 0, 0]
    position = 0
    while position < len(events):
        chunk = events[position : position + rng.randint(1, 300)]
        log = []
        for raw in chunk:
            p = rng.randrange(3)
            log.append(("dialer.contacts", p, offsets[p], parsed(raw)))
            offsets[p] += 1
        await apply_events(store, log)
        position += len(chunk)


def model_of(events: list[dict[str, Any]]) -> CampaignState:
    model = CampaignState()
    for raw in events:
        apply(model, parsed(raw))
    return model


async def assert_like_model(store: Store, model: CampaignState, *, timed: bool = True) -> None:
    """Entity states (by digest), counters and layout are what the model implies (call
    records without their time when not `timed`: states of the fixed layout had none)."""
    contacts, records = await store.entity_states(CMP)
    assert {d: unpack_contact(p) for d, p in contacts.items()} == {
        keys.digest(cid): c for cid, c in model.contacts.items()
    }
    stored = {d: unpack_record(p) for d, p in records.items()}
    want = {keys.digest(eid): r for eid, r in model.records.items()}
    if not timed:
        stored = {d: (r.version, r.status, r.follow_up) for d, r in stored.items()}  # type: ignore[misc]
        want = {d: (r.version, r.status, r.follow_up) for d, r in want.items()}  # type: ignore[misc]
    assert stored == want
    stats = await store.client.hgetall(keys.stats(CMP))
    counters = {k: int(v) for k, v in stats.items() if k.startswith(("contacts", "retry:"))}
    counters |= {k: int(v) for k, v in stats.items() if k.startswith(("calls:", "batches:"))}
    assert counters == stats_counters(model)
    for batch_id, expected in batch_counters(model).items():
        stored = await batches.fields(store, CMP, batch_id)
        got = {
            k: int(v) for k, v in stored.items() if k.startswith(("known", "contacts:", "retry:"))
        }
        assert got == expected, batch_id
    layout = await store.client.hgetall(keys.layout(CMP))
    for kind, entities in (("c", model.contacts), ("r", model.records)):
        level, split = int(layout.get(f"{kind}:L", 0)), int(layout.get(f"{kind}:P", 0))
        assert int(layout.get(f"{kind}:N", 0)) == len(entities)
        buckets = (1 << level) + split
        # one bucket up to ONE_BUCKET entities, then no more than LOAD each on average
        assert buckets == 1 if len(entities) <= keys.ONE_BUCKET else buckets > 1
        assert len(entities) <= max(keys.LOAD * buckets, keys.ONE_BUCKET)


async def test_buckets_split_as_the_campaign_grows_and_every_counter_stays_exact(
    store: Store,
) -> None:
    rng = random.Random(11)
    events = stream(rng, contacts=2500, records=1500)
    await deliver(store, events, rng)
    model = model_of(events)
    await assert_like_model(store, model)
    expected = Expected(events)
    assert await store.stats(CMP) == expected.stats(CMP)
    assert comparable_batches(await store.batches(CMP, limit=100)) == expected.batches(CMP)

    # Python's bucket arithmetic agrees with the script's: each state is where it says
    level, split = await store.bucket_layout(CMP, "c")
    assert (1 << level) + split >= 2500 // keys.LOAD
    for contact_id in list(model.contacts)[:300]:
        digest = keys.digest(contact_id)
        assert await store.client.hexists(await store.entity_key(CMP, "c", digest), digest)

    # every bucket stays small enough for the compact encoding
    bucket_keys = [keys.contact_bucket(CMP, n) for n in range((1 << level) + split)]
    sizes = [await store.client.hlen(k) for k in bucket_keys]
    assert max(sizes) <= 128
    if not store.client.__class__.__module__.startswith("fakeredis"):
        encodings = {await store.client.object("encoding", k) for k in bucket_keys}
        assert encodings == {"listpack"}


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**32), contacts=st.integers(1, 400), records=st.integers(0, 300))
async def test_the_script_agrees_with_the_model_across_splits(
    store: Store, seed: int, contacts: int, records: int
) -> None:
    rng = random.Random(seed)
    events = stream(rng, contacts, records)
    await store.client.flushall()
    await deliver(store, events, rng)
    await assert_like_model(store, model_of(events))


async def test_a_chunked_recount_is_exact_while_the_worker_applies_and_splits(
    store: Store,
) -> None:
    """Steps of a few entities; between them the worker adds, corrects and moves contacts
    (splitting buckets the recount has counted and some it has not): the end is exact."""
    rng = random.Random(5)
    first = stream(rng, contacts=600, records=300)
    await deliver(store, first, rng)
    later = [event("contact", i, v) for i in range(400, 1600) for v in (1, 2)]
    later += [event("record", i, 4) for i in range(0, 300, 3)]
    rng.shuffle(later)

    call_keys = campaign_keys(CMP)
    await store.run_script(RECOUNT_BEGIN, call_keys, ["t1", "60000"])
    offset, behind_cursor = 10_000, 0
    while True:
        done = int(await store.run_script(RECOUNT_STEP, call_keys, ["t1", "40", "60000"]))
        cursor = int(await store.client.hget(keys.shadow(CMP), "c") or 0)
        before = await store.bucket_layout(CMP, "c")
        chunk, later = later[:60], later[60:]
        log = [("dialer.contacts", 0, offset + n, parsed(raw)) for n, raw in enumerate(chunk)]
        offset += len(chunk)
        await apply_events(store, log)
        if (await store.bucket_layout(CMP, "c")) != before and before[1] < cursor:
            behind_cursor += 1  # a bucket the recount had counted was split
        if done:
            break
    await deliver_rest(store, later, offset)
    assert behind_cursor > 0
    await store.client.hincrby(keys.stats(CMP), "contacts:pending", 5)  # a hand edit
    out = await store._compare(CMP, "t1", "1", [], dry_run=True)
    assert out is not None
    quads = [out[i : i + 4] for i in range(0, len(out), 4)]
    assert len(quads) == 1
    scope, field, found, want = quads[0]
    assert (scope, field) == ("stats", "contacts:pending")
    assert int(found) - int(want) == 5
    assert not await store.client.exists(keys.shadow(CMP))

    await store.client.hincrby(keys.stats(CMP), "contacts:pending", -5)
    model = model_of(first + [event("contact", i, v) for i in range(400, 1600) for v in (1, 2)]
                     + [event("record", i, 4) for i in range(0, 300, 3)])  # fmt: skip
    await assert_like_model(store, model)
    assert await store.recount(CMP, dry_run=True, budget=25) == []


async def deliver_rest(store: Store, rest: list[dict[str, Any]], offset: int) -> None:
    log = [("dialer.contacts", 0, offset + n, parsed(raw)) for n, raw in enumerate(rest)]
    if log:
        await apply_events(store, log)


async def test_a_recount_waits_for_a_running_one_and_an_expired_one_is_told_so(
    store: Store,
) -> None:
    await deliver(store, stream(random.Random(2), 300, 100), random.Random(2))
    call_keys = campaign_keys(CMP)
    assert await store.run_script(RECOUNT_BEGIN, call_keys, ["old", "60000"]) == 1
    assert await store.run_script(RECOUNT_BEGIN, call_keys, ["new", "60000"]) == 0
    await store.client.delete(keys.shadow(CMP))  # as if it expired
    assert int(await store.run_script(RECOUNT_STEP, call_keys, ["old", "10", "60000"])) == -1
    assert await store._compare(CMP, "old", "1", [], dry_run=True) is None
    # two at once: the second waits for the first, both exact
    both = await asyncio.gather(
        store.recount(CMP, dry_run=True, budget=20), store.recount(CMP, dry_run=False, budget=20)
    )
    assert both == [[], []]


async def test_a_recount_of_many_batches_compares_them_a_chunk_at_a_time(store: Store) -> None:
    """More batches than one call compares: drift in any of them is found, and an index
    entry missing is index drift only, in the dry run as in the correcting one."""
    events = [event("batch", b, 1) for b in range(450)]
    events += [{**event("contact", i, 1), "batch_id": f"btc_{i % 450}"} for i in range(1800)]
    await deliver(store, events, random.Random(4))
    assert await store.recount(CMP, dry_run=True) == []
    client = store.client
    await batches.change(store, CMP, "btc_321", {"known": 2})
    status = (await batches.fields(store, CMP, "btc_17"))["s"]
    await client.zrem(keys.batch_index(CMP, status), "btc_17")
    expected = {("btc_321", "known", "6", "4"), ("index:btc_17", status, "absent", "present")}
    for dry_run in (True, False):
        out = await store.recount(CMP, dry_run=dry_run, budget=500)
        assert {tuple(out[i : i + 4]) for i in range(0, len(out), 4)} == expected
    assert await store.recount(CMP, dry_run=True) == []


# -- migration from the fixed layout ----------------------------------------------------


def legacy_bucket(entity_id: str) -> int:
    """How the fixed layout placed an entity (crc32 of its id, 16,384 buckets)."""
    return zlib.crc32(entity_id.encode()) & (keys.LEGACY_BUCKETS - 1)


async def write_legacy(store: Store, events: list[dict[str, Any]]) -> CampaignState:
    """A campaign as the fixed layout left it: states under plain ids with batch ids,
    counters and batches as they were."""
    model = model_of(events)
    upserts = [parsed(e) for e in events if e["event_type"] == "batch.upserted"]
    await store.apply(group([("old", 0, n, e) for n, e in enumerate(upserts)]), {("old", 0): 1})
    client = store.client
    for contact_id, c in model.contacts.items():
        packed = f"{c.version}|{CONTACT_CODES[c.status]}|{c.retry_count}|{c.batch_id}"
        await client.hset(
            keys.legacy_bucket(CMP, "c", legacy_bucket(contact_id)), contact_id, packed
        )
    for execution_id, r in model.records.items():
        packed = f"{r.version}|{CALL_CODES[r.status]}|{int(r.follow_up)}"
        await client.hset(
            keys.legacy_bucket(CMP, "r", legacy_bucket(execution_id)), execution_id, packed
        )
    await client.hset(keys.stats(CMP), mapping=stats_counters(model))  # type: ignore[arg-type]
    for batch_id, fields in batch_counters(model).items():
        only_named = {"s": "pending", "v": 0} if model.batches[batch_id].version == 0 else {}
        row = await batches.fields(store, CMP, batch_id)
        await batches.to_own_hash(store, CMP, batch_id, row | only_named | fields)
    for batch_id, batch in model.batches.items():
        if batch.version == 0:
            await client.zadd(keys.batch_index(CMP), {batch_id: float("inf")})
            await client.zadd(keys.batch_index(CMP, "pending"), {batch_id: float("inf")})
    return model


async def test_a_campaign_of_the_fixed_layout_is_migrated_without_loss(store: Store) -> None:
    rng = random.Random(9)
    events = stream(rng, contacts=700, records=400)
    model = await write_legacy(store, events)
    expected = Expected(events)
    assert await store.stats(CMP) == expected.stats(CMP)  # the old counters were right
    # a worker of the new layout applies a newer version of one contact before migration
    newer = event("contact", 3, 9)
    await apply_events(store, [("dialer.contacts", 0, 0, parsed(newer))])
    events.append(newer)
    model = model_of(events)

    assert await store.legacy_campaigns() == [CMP]
    # interrupted after moving every state, before its recount: found again, finished
    real_recount = store.recount

    async def interrupted(*args: Any, **kwargs: Any) -> list[str]:
        raise ConnectionError("the migrating process died")

    store.recount = interrupted  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await store.migrate_campaign(CMP)
    store.recount = real_recount  # type: ignore[method-assign]
    assert await store.legacy_campaigns() == [CMP]
    assert await store.migrate_campaign(CMP) == 0  # nothing left to move; recounted

    assert await store.legacy_campaigns() == []
    assert not [
        k async for k in store.client.scan_iter(match=keys.legacy_bucket(CMP, "c", 0)[:-1] + "*")
    ]
    await assert_like_model(store, model, timed=False)
    assert await store.stats(CMP) == Expected(events).stats(CMP)
    assert comparable_batches(await store.batches(CMP, limit=100)) == Expected(events).batches(CMP)

    # versions came along: an old version is stale, a newer one applies
    contact_id = next(iter(model.contacts))
    index = int(contact_id.split("_")[1])
    version = model.contacts[contact_id].version
    old = parsed(event("contact", index, version))
    [codes] = await apply_events(store, [("dialer.contacts", 1, 0, old)])
    assert codes == [STALE]
    newer_still = parsed(event("contact", index, version + 1))
    assert await apply_events(store, [("dialer.contacts", 1, 1, newer_still)]) == [[APPLIED]]


def test_dialer_stats_migrate_moves_every_legacy_campaign(
    valkey_server: Valkey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented procedure, on real valkey: `dialer-stats migrate` finds the campaigns
    of the fixed layout and leaves each exact; a second run finds nothing to do."""
    rng = random.Random(3)
    events = stream(rng, contacts=300, records=200)

    async def prepare() -> None:
        store = Store(aioredis.Redis.from_url(valkey_server.url, decode_responses=True))
        await store.client.flushall()
        await write_legacy(store, events)
        await store.close()

    async def check() -> tuple[list[str], dict[str, Any]]:
        store = Store(aioredis.Redis.from_url(valkey_server.url, decode_responses=True))
        try:
            await assert_like_model(store, model_of(events), timed=False)
            return await store.legacy_campaigns(), await store.stats(CMP)
        finally:
            await store.close()

    asyncio.run(prepare())
    monkeypatch.setenv("REDIS_URL", valkey_server.url)
    result = CliRunner().invoke(cli, ["migrate"])
    assert result.exit_code == 0, result.output
    assert "1 campaign(s) migrated" in result.output
    legacy, stats = asyncio.run(check())
    assert legacy == []
    assert stats == Expected(events).stats(CMP)
    again = CliRunner().invoke(cli, ["migrate"])
    assert again.exit_code == 0 and "0 campaign(s) migrated" in again.output


async def test_a_stale_event_naming_an_unknown_batch_leaves_no_batch_number(
    store: Store,
) -> None:
    newer = {**event("contact", 1, 2), "batch_id": "btc_a"}
    stale = {**event("contact", 1, 1), "batch_id": "btc_never_applied"}
    await apply_events(store, [("dialer.contacts", 0, 0, parsed(newer))])
    [codes] = await apply_events(store, [("dialer.contacts", 0, 1, parsed(stale))])
    assert codes == [STALE]
    numbers = await store.client.hgetall(keys.layout(CMP))
    assert "b:btc_a" in numbers
    assert "b:btc_never_applied" not in numbers
