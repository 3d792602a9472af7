"""The pure parts of reconciliation: the worker's progress, repair deltas, real field drift."""

from __future__ import annotations

from processors.domain.transitions import ContactState, RecordState
from processors.reconcile.runner import Changes, applied_through, counter_delta, recount_drift


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


def test_field_drift_leaves_out_what_the_repairs_account_for() -> None:
    """RECOUNT after a repair: a correction the repair's own counter change explains is not
    drift; the rest is, with `found` as it was before the run."""
    quads = [
        "stats", "contacts:completed", "105", "100",  # +5 from re-applied lost states
        "stats", "calls:busy", "9", "6",  # edited by hand (+3)
        "index:btc_1", "all", "", "+inf",
    ]  # fmt: skip
    delta = counter_delta(
        Changes(contacts=[(None, ContactState(1, "completed", 0, "btc_1"))] * 5),
        {"btc_1": {"s": "pending", "v": "0", "known": "3"}},
    )
    real = recount_drift(quads, delta, dry_run=False)
    assert [(d.scope, d.field, d.found, d.expected, d.corrected) for d in real] == [
        ("stats", "calls:busy", 9, 6, 6),
        ("index:btc_1", "all", "", "+inf", "+inf"),
    ]
    # dry: RECOUNT ran instead of the repair, so the repair's change goes to `expected`
    dry_quads = ["stats", "contacts:completed", "100", "95", "stats", "calls:busy", "9", "6"]
    dry = recount_drift(dry_quads, delta, dry_run=True)
    assert [(d.scope, d.field, d.found, d.expected) for d in dry] == [("stats", "calls:busy", 9, 6)]
