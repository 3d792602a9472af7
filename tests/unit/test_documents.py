"""Database documents validated like events (processors/reconcile/documents.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from processors.domain.events import CallRecordCompleted, ContactStatusChanged
from processors.reconcile.documents import InvalidDocument, projection, to_event

READ_AT = datetime(2026, 5, 8, 9, 0, tzinfo=UTC)
CONTACT: dict[str, Any] = {
    "_id": "con_1", "organization_id": "org_1", "campaign_id": "cmp_1", "batch_id": "btc_1",
    "status": "NO-ANSWER", "retry_count": 1, "follow_up_count": 0, "version": 4,
}  # fmt: skip


def test_a_contact_document_is_its_event_with_the_status_normalised() -> None:
    event = to_event("contacts", CONTACT, read_at=READ_AT)
    assert isinstance(event, ContactStatusChanged)
    assert (event.contact_id, event.status, event.version) == ("con_1", "no_answer", 4)


def test_the_id_field_wins_over_underscore_id_and_bson_dates_are_accepted() -> None:
    doc = {
        "_id": "65f0c0ffee", "execution_id": "exec_9", "organization_id": "org_1",
        "campaign_id": "cmp_1", "batch_id": "btc_1", "contact_id": "con_1",
        "call_status": "Completed", "is_follow_up": False, "retry_index": 0,
        "duration_seconds": 12.5, "occurred_at": datetime(2026, 5, 8, 10, 0), "version": 1,
    }  # fmt: skip
    event = to_event("call_records", doc, read_at=READ_AT)
    assert isinstance(event, CallRecordCompleted)
    assert (event.execution_id, event.call_status) == ("exec_9", "completed")
    assert event.occurred_at == datetime(2026, 5, 8, 10, 0, tzinfo=UTC)


def test_invalid_documents_carry_their_id_and_reason() -> None:
    cases = [
        {**CONTACT, "status": "exploded"},
        {**CONTACT, "version": "two"},
        {**CONTACT, "retry_count": -1},
        {k: v for k, v in CONTACT.items() if k != "version"},
    ]
    for doc in cases:
        outcome = to_event("contacts", doc, read_at=READ_AT)
        assert isinstance(outcome, InvalidDocument), doc
        assert outcome.id == "con_1" and outcome.collection == "contacts" and outcome.reason


def test_the_projection_reads_only_the_documented_fields() -> None:
    assert set(projection("batches")) == {
        "batch_id", "organization_id", "campaign_id", "status", "total_contacts", "created_at",
        "version",
    }  # fmt: skip
