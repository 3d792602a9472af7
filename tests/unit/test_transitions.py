"""The pure model: any order or repetition of the same events gives the same stats."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.domain.contract import APPLIED, STALE, TENANT_MISMATCH
from processors.domain.events import Event
from processors.domain.transitions import CampaignState, apply, batch_counters, stats_counters
from processors.domain.views import batch_view, stats_view
from tests.oracle import Expected, check_invariants, comparable_batches
from tests.strategies import CAMPAIGN, deliveries, event_sets
from tests.streams import entity_event, parsed, random_stream


def model_views(
    events: list[dict[str, Any]],
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    states: dict[str, CampaignState] = {}
    for event in events:
        apply(states.setdefault(event["campaign_id"], CampaignState()), parsed(event))
    stats, batches = {}, {}
    for campaign, state in states.items():
        stats[campaign] = stats_view(
            campaign, {k: str(v) for k, v in stats_counters(state).items()}
        )
        rows = []
        per_batch = batch_counters(state)
        for batch_id, batch in state.batches.items():
            fields = {k: str(v) for k, v in per_batch[batch_id].items()}
            fields["s"] = batch.status
            if batch.total_contacts is not None:
                fields["total"] = str(batch.total_contacts)
            if batch.created_at:
                fields["created_at"] = batch.created_at
            rows.append(batch_view(campaign, batch_id, fields))
        batches[campaign] = rows
    return stats, batches


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 200))
def test_model_matches_oracle_in_any_order(seed: int, size: int) -> None:
    """Whatever the order and duplication, the model equals the oracle."""
    events = random_stream(random.Random(seed), size=size)
    expected = Expected(events)
    stats, batches = model_views(events)
    assert sorted(stats) == expected.campaigns
    for campaign in expected.campaigns:
        assert stats[campaign] == expected.stats(campaign)
        by_id = sorted(comparable_batches(batches[campaign]), key=lambda r: r["batch_id"])
        assert by_id == sorted(expected.batches(campaign), key=lambda r: r["batch_id"])
        check_invariants(stats[campaign], batches[campaign])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32))
def test_permutations_agree(seed: int) -> None:
    """Two shuffles of one stream give identical stats."""
    rng = random.Random(seed)
    events = random_stream(rng, size=80)
    other = list(events)
    rng.shuffle(other)
    assert model_views(events)[0] == model_views(other)[0]


def test_highest_version_wins_and_equal_versions_change_nothing() -> None:
    """An older or equal version of an entity is stale."""
    state = CampaignState()
    v2 = parsed(entity_event("cmp_x", "org_x", "contact", 1, 2))
    v1 = parsed(entity_event("cmp_x", "org_x", "contact", 1, 1))
    assert apply(state, v2) == APPLIED
    assert apply(state, v1) == STALE
    assert apply(state, v2) == STALE
    assert state.contacts["con_1"].version == 2


def test_another_tenant_is_rejected() -> None:
    """The first organization owns the campaign; another one's events change nothing."""
    state = CampaignState()
    assert apply(state, parsed(entity_event("cmp_x", "org_x", "contact", 1, 1))) == APPLIED
    intruder = entity_event("cmp_x", "org_evil", "contact", 2, 1)
    intruder["batch_id"] = "btc_evil"
    assert apply(state, parsed(intruder)) == TENANT_MISMATCH
    assert "con_2" not in state.contacts
    assert "btc_evil" not in state.batches
    assert state.organization_id == "org_x"


def contact(index: int, version: int, batch_id: str, status: str = "pending") -> Event:
    event = entity_event("cmp_x", "org_x", "contact", index, version)
    event.update(batch_id=batch_id, status=status, retry_count=1)
    return parsed(event)


def test_a_newer_version_moves_the_contact_to_another_batch() -> None:
    """Its status and retry bucket leave the old batch's counters and join the new one's."""
    state = CampaignState()
    assert apply(state, contact(1, 1, "btc_a", "retrying")) == APPLIED
    assert apply(state, contact(2, 1, "btc_a")) == APPLIED
    assert apply(state, contact(1, 2, "btc_b", "retrying")) == APPLIED
    assert batch_counters(state) == {
        "btc_a": {"known": 1, "contacts:pending": 1},
        "btc_b": {"known": 1, "contacts:retrying": 1, "retry:1": 1},
    }
    assert apply(state, contact(1, 2, "btc_c")) == STALE  # whatever batch it names
    assert apply(state, contact(1, 1, "btc_c")) == STALE
    assert set(state.batches) == {"btc_a", "btc_b"}


def test_a_contact_only_batch_lives_while_a_contact_names_it() -> None:
    """Known only from contacts, a batch goes with the last one; an upserted one stays."""
    state = CampaignState()
    upsert = entity_event("cmp_x", "org_x", "batch", 0, 1)
    upsert["batch_id"] = "btc_a"
    apply(state, parsed(upsert))
    apply(state, contact(1, 1, "btc_a"))
    apply(state, contact(2, 1, "btc_x"))
    apply(state, contact(3, 1, "btc_x"))
    apply(state, contact(1, 2, "btc_x"))
    apply(state, contact(2, 2, "btc_y"))
    assert set(state.batches) == {"btc_a", "btc_x", "btc_y"}
    apply(state, contact(1, 3, "btc_y"))
    apply(state, contact(3, 2, "btc_y"))
    assert set(state.batches) == {"btc_a", "btc_y"}  # btc_a is empty, but was upserted
    assert stats_counters(state)["batches:pending"] == 1
    assert state.batches["btc_y"].known == 3


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_any_delivery_of_a_set_with_moves_gives_the_oracle(data: st.DataObject) -> None:
    """Moves, corrections, duplicates and foreign events in any order: the oracle's views."""
    own, foreign = data.draw(event_sets())
    expected = Expected(own + foreign)
    by_id = sorted(expected.batches(CAMPAIGN), key=lambda r: r["batch_id"])
    for _ in range(2):
        stats, batches = model_views(data.draw(deliveries(own, foreign)))
        assert stats[CAMPAIGN] == expected.stats(CAMPAIGN)
        rows = comparable_batches(batches[CAMPAIGN])
        assert sorted(rows, key=lambda r: r["batch_id"]) == by_id
        check_invariants(stats[CAMPAIGN], batches[CAMPAIGN])
