"""Property: any delivery of one event set -- permuted, duplicated, chunked, replayed, with
batch moves, corrections and foreign organizations -- leaves one and the same state in
Redis (counters, indexes, listings), equal to the pure model and to the oracle."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.domain.batchstate import unpack_batch
from processors.domain.contract import BATCH_STATUSES, REPLAYED, TENANT_MISMATCH
from processors.domain.transitions import CampaignState, apply, batch_counters, stats_counters
from processors.store import keys
from processors.store.client import Store
from processors.store.slices import group
from tests.oracle import Expected, check_invariants, comparable_batches
from tests.store.test_apply import epochs
from tests.strategies import CAMPAIGN, OWNER, deliveries, event_sets
from tests.streams import parsed

# Fields of the stats hash that describe deliveries rather than the event set.
DELIVERY_FIELDS = ("rev", "applied_at_ms", "last_event_ms")
BATCH_COUNTERS = ("known", "contacts:", "retry:")


async def deliver(store: Store, delivery: list[dict[str, Any]], rng: random.Random) -> None:
    """Apply like the worker: the first event alone, then random chunks over 3 partitions,
    some replayed; every outcome code must be the model's, every replay a no-op."""
    model = CampaignState()
    offsets = [0, 0, 0]
    chunks = [delivery[:1]]
    rest = delivery[1:]
    while rest:
        size = rng.randint(1, 12)
        chunks.append(rest[:size])
        rest = rest[size:]
    replays = foreign = 0
    for chunk in chunks:
        log = []
        for event in chunk:
            partition = rng.randrange(3)
            log.append(("dialer.contacts", partition, offsets[partition], parsed(event)))
            offsets[partition] += 1
        slices = group(log)
        [codes] = await store.apply(slices, epochs())
        assert codes == [apply(model, e) for _, _, _, e in slices[0].items]
        foreign += codes.count(TENANT_MISMATCH)
        if rng.random() < 0.3:  # a crash before the commit: the same chunk again
            [again] = await store.apply(slices, epochs())
            assert again == [TENANT_MISMATCH if c == TENANT_MISMATCH else REPLAYED for c in codes]
            replays += len(codes)
    tallies = await store.client.hgetall(keys.stats(CAMPAIGN))
    assert int(tallies.get("events:tenant_mismatch", 0)) == foreign  # counted once each
    assert int(tallies.get("events:replayed", 0)) == replays
    firsts = sum(int(tallies.get(f"events:{n}", 0)) for n in ("applied", "stale"))
    assert firsts + foreign == len(delivery)


async def snapshot(store: Store) -> dict[str, Any]:
    """Every key of the campaign but the fence, the stats and every batch listing. Entity
    states are taken decoded (batch ids, not the numbers given in order of first sight);
    the buckets they are in depend only on how many entities there are."""
    client = store.client
    state: dict[str, Any] = {}
    layout = await client.hgetall(keys.layout(CAMPAIGN))
    state["layout"] = {k: v for k, v in layout.items() if k[:2] in ("c:", "r:")}
    state["entities"] = await store.entity_states(CAMPAIGN)
    buckets = (keys.contact_bucket(CAMPAIGN, 0)[:-1], keys.record_bucket(CAMPAIGN, 0)[:-1])
    async for key in client.scan_iter(match=keys.campaign_pattern(CAMPAIGN)):
        if key in (keys.fence(CAMPAIGN), keys.layout(CAMPAIGN)) or key.startswith(buckets):
            continue
        if await client.type(key) == "zset":
            state[key] = await client.zrange(key, 0, -1, withscores=True)
        else:
            fields = await client.hgetall(key)
            if key == keys.stats(CAMPAIGN):
                fields = {
                    k: v
                    for k, v in fields.items()
                    if k not in DELIVERY_FIELDS and not k.startswith("events:")
                }
            state[key] = fields
    state["api:stats"] = await store.stats(CAMPAIGN)
    for status in (None, *BATCH_STATUSES):
        state[f"api:batches:{status}"] = await store.batches(CAMPAIGN, limit=100, status=status)
    return state


def assert_model(state: dict[str, Any], model: CampaignState) -> None:
    """Counter hashes and indexes are what the pure model implies."""
    counters = {k: int(v) for k, v in state[keys.stats(CAMPAIGN)].items() if k != "org"}
    assert counters == stats_counters(model)
    packed = state.get(keys.batches(CAMPAIGN), {})
    assert set(packed) == set(model.batches)
    for batch_id, expected in batch_counters(model).items():
        stored = unpack_batch(packed[batch_id]).items()
        assert {k: int(v) for k, v in stored if k.startswith(BATCH_COUNTERS)} == expected
    inf = float("inf")
    order = sorted(model.batches, key=lambda b: (model.batches[b].created_us or inf, b))
    listed = state.get(keys.batch_index(CAMPAIGN), [])
    assert [b for b, _ in listed] == order
    assert [score for _, score in listed] == [model.batches[b].created_us or inf for b in order]


@settings(
    max_examples=25,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_any_delivery_of_an_event_set_leaves_one_state(store: Store, data: Any) -> None:
    """Two deliveries of the same set: identical Redis state, the model's and the oracle's."""
    own, foreign = data.draw(event_sets(), label="event set")
    states = []
    for n in range(2):
        delivery = data.draw(deliveries(own, foreign), label=f"delivery {n}")
        rng = data.draw(st.randoms(use_true_random=False), label=f"chunking {n}")
        await store.client.flushall()
        await deliver(store, delivery, rng)
        states.append(await snapshot(store))
    assert states[0] == states[1]

    model = CampaignState(organization_id=OWNER)
    for event in own + foreign:
        apply(model, parsed(event))
    assert_model(states[0], model)

    expected = Expected(own + foreign)
    assert states[0]["api:stats"] == expected.stats(CAMPAIGN)
    listing = states[0]["api:batches:None"]
    assert comparable_batches(listing) == expected.batches(CAMPAIGN)
    for status in BATCH_STATUSES:
        assert [b["batch_id"] for b in states[0][f"api:batches:{status}"]] == [
            b["batch_id"] for b in listing if b["status"] == status
        ]
    check_invariants(states[0]["api:stats"], listing)
