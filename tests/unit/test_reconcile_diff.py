"""The pure parts of reconciliation: the worker's progress, repair deltas, real field drift."""

from __future__ import annotations

from collections import Counter

from processors.domain.transitions import ContactState, RecordState
from processors.reconcile.plan import (
    Census,
    Changes,
    applied_through,
    census_of,
    counter_delta,
    field_drift,
)
from processors.reconcile.report import FieldDrift


def test_applied_through_needs_every_partition_by_fence_or_commit() -> None:
    """A fence at the last offset read, or a commit past it, per partition read."""
    last = {"c:0": 10, "c:1": 4}
    assert applied_through(last, {"c:0": 10, "c:1": 7}, {})
    assert applied_through(last, {"c:0": 10}, {"c:1": 5})  # fence lost, the group is past
    assert not applied_through(last, {"c:0": 10}, {"c:1": 4})  # committed = next to read
    assert not applied_through(last, {"c:0": 9, "c:1": 4}, {})
    assert applied_through({}, {}, {})  # nothing read: nothing to wait for


def test_a_move_out_of_a_contact_only_batch_takes_the_batch_with_it() -> None:
    """The contact's status and `known` move between batches; a contact-only batch left
    empty goes (and with it its `batches:pending`), as the scripts do."""
    old = ContactState(1, "pending", 0, "btc_a")
    new = ContactState(2, "retrying", 2, "btc_b")
    rows = {
        "btc_a": {"s": "pending", "v": "0", "known": "1"},
        "btc_b": {"s": "in_progress", "v": "3", "known": "4"},
    }
    delta = counter_delta(Changes(contacts=[(old, new)]), rows)
    assert {k: v for k, v in delta.items() if v} == {
        ("stats", "contacts:pending"): -1,
        ("stats", "contacts:retrying"): 1,
        ("stats", "retry:2"): 1,
        ("batch:btc_a", "known"): -1,
        ("batch:btc_a", "contacts:pending"): -1,
        ("batch:btc_b", "known"): 1,
        ("batch:btc_b", "contacts:retrying"): 1,
        ("batch:btc_b", "retry:2"): 1,
        ("stats", "batches:pending"): -1,
    }


def test_restoring_lost_entities_counts_them_and_recreates_their_batch() -> None:
    """A lost contact joining a batch whose hash is gone recreates it as pending."""
    changes = Changes(
        contacts=[(None, ContactState(3, "completed", 0, "btc_gone"))],
        records=[(RecordState(1, "busy", True), RecordState(2, "completed", True))],
    )
    delta = counter_delta(changes, {})
    assert {k: v for k, v in delta.items() if v} == {
        ("stats", "contacts"): 1,
        ("stats", "contacts:completed"): 1,
        ("batch:btc_gone", "known"): 1,
        ("batch:btc_gone", "contacts:completed"): 1,
        ("stats", "batches:pending"): 1,
        ("stats", "calls:busy"): -1,
        ("stats", "calls:completed"): 1,
    }


def census(*quads: tuple[str, str, str, str]) -> Census:
    return census_of([part for quad in quads for part in quad])


def drift(found: list[FieldDrift]) -> list[tuple[str, str, object, object, object]]:
    return [(d.scope, d.field, d.found, d.expected, d.corrected) for d in found]


def test_field_drift_leaves_out_what_lost_states_account_for() -> None:
    """Entity states deleted with their counts left behind: counters that match the state
    with the missing entities restored are not drift; the rest is, `found` as before the
    run, `expected` what it should have been, `corrected` what the repaired state implies.
    Index entries are taken from the recount after the repairs."""
    before = census(
        ("stats", "contacts", "8", "3"),  # 5 contacts lost from their bucket, counts kept
        ("stats", "contacts:completed", "105", "100"),
        ("btc_1", "known", "8", "3"),
        ("btc_1", "contacts:completed", "8", "3"),
        ("stats", "calls:busy", "9", "6"),  # edited by hand (+3)
        ("index:btc_1", "all", "", "+inf"),
    )
    after = census(
        ("stats", "contacts", "13", "8"),  # the repair counted them once more
        ("stats", "contacts:completed", "110", "105"),
        ("btc_1", "known", "13", "8"),
        ("btc_1", "contacts:completed", "13", "8"),
        ("stats", "calls:busy", "9", "6"),
        ("index:btc_1", "all", "", "+inf"),
    )
    missing = [(None, ContactState(n, "completed", 0, "btc_1")) for n in range(5)]
    lost = counter_delta(Changes(contacts=missing), {"btc_1": {"s": "pending", "v": "3"}})
    assert drift(field_drift(before, after, lost)) == [
        ("stats", "calls:busy", 9, 6, 6),
        ("index:btc_1", "all", "", "+inf", "+inf"),
    ]
    # dry: nothing repaired, nothing corrected, the same drift
    assert drift(field_drift(before, None, lost)) == [
        ("stats", "calls:busy", 9, 6, None),
        ("index:btc_1", "all", "", "+inf", None),
    ]


def test_a_hand_edit_is_drift_even_where_a_stale_repair_moves_the_counter_as_much() -> None:
    """Redis holds a contact in an older version with counters that follow it (an older
    copy of Redis), and a counter the repair also moves was edited by exactly the repair's
    change: the counters are judged against the state found, so the edit is drift. A stale
    entity never explains a counter (`lost` has only missing and extra entities)."""
    before = census(
        ("stats", "contacts:pending", "2", "2"),
        ("stats", "contacts:completed", "1", "0"),  # edited: +1
        ("btc_a", "contacts:pending", "2", "2"),
    )
    after = census(
        ("stats", "contacts:pending", "1", "1"),
        ("stats", "contacts:completed", "2", "1"),  # the repair added its +1 to the edit
        ("btc_a", "contacts:pending", "1", "1"),
        ("btc_a", "contacts:completed", "1", "1"),
    )
    for result, corrected in (
        (field_drift(before, after, Counter()), 1),
        (field_drift(before, None, Counter()), None),
    ):
        assert drift(result) == [("stats", "contacts:completed", 1, 0, corrected)]


def test_an_edit_as_large_as_a_missing_entity_is_drift_when_counters_follow_the_state() -> None:
    """A contact missing from an older copy of Redis, counters following that copy, and
    one counter edited by the contact's contribution: counters following the state found
    leave one field drifted, counters that kept the contact's counts would leave three --
    the edit is reported, not taken for the lost contact."""
    before = census(
        ("stats", "contacts", "1", "1"),
        ("stats", "contacts:completed", "2", "1"),  # edited: +1
        ("btc_a", "known", "1", "1"),
        ("btc_a", "contacts:completed", "1", "1"),
    )
    missing = Changes(contacts=[(None, ContactState(1, "completed", 0, "btc_a"))])
    lost = counter_delta(missing, {"btc_a": {"s": "pending", "v": "1", "known": "1"}})
    assert drift(field_drift(before, None, lost)) == [("stats", "contacts:completed", 2, 1, None)]


def test_a_counter_edited_to_text_is_drift_and_a_dry_run_skips_rewritten_batches() -> None:
    """Text where a number belongs is drift whatever explains the rest; in a dry run the
    index entries of batches the repairs would rewrite are theirs to set right."""
    before = census(
        ("stats", "calls:busy", "lots", "2"),
        ("index:btc_gone", "all", "", "+inf"),
        ("index:btc_2", "pending", "absent", "present"),
    )
    assert drift(field_drift(before, None, Counter(), touched=["btc_gone"])) == [
        ("stats", "calls:busy", "lots", 2, None),
        ("index:btc_2", "pending", "absent", "present", None),
    ]
