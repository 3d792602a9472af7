"""The pure model: any order or repetition of the same events gives the same stats."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.domain.events import Event, parse
from processors.domain.transitions import CampaignState, apply, batch_counters, stats_counters
from processors.domain.views import batch_view, stats_view
from processors.store.lua import APPLIED, BATCH_MISMATCH, STALE, TENANT_MISMATCH
from tests.oracle import Expected, check_invariants, comparable_batches
from tests.streams import entity_event, random_stream


def parsed(event: dict[str, Any]) -> Event:
    outcome = parse(json.dumps(event).encode())
    assert not hasattr(outcome, "reason"), outcome
    return outcome  # type: ignore[return-value]


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


def test_other_tenant_and_other_batch_are_rejected() -> None:
    """The first organization owns the campaign; a contact stays in its batch."""
    state = CampaignState()
    assert apply(state, parsed(entity_event("cmp_x", "org_x", "contact", 1, 1))) == APPLIED
    intruder = parsed(entity_event("cmp_x", "org_evil", "contact", 2, 1))
    assert apply(state, intruder) == TENANT_MISMATCH
    moved = entity_event("cmp_x", "org_x", "contact", 1, 2)
    moved["batch_id"] = "btc_other"
    assert apply(state, parsed(moved)) == BATCH_MISMATCH
    assert "con_2" not in state.contacts
