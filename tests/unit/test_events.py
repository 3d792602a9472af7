"""The event contract: normalisation, validation and rejection reasons."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.domain.events import (
    BatchUpserted,
    CallRecordCompleted,
    ContactStatusChanged,
    Rejection,
    normalise_status,
    parse,
)
from processors.domain.schema import validate
from processors.domain.times import iso

CONTACT: dict[str, Any] = {
    "event_id": "evt_1",
    "event_type": "contact.status_changed",
    "organization_id": "org_a",
    "campaign_id": "cmp_a",
    "occurred_at": "2026-05-08T09:00:00Z",
    "version": 3,
    "batch_id": "btc_1",
    "contact_id": "con_1",
    "status": "in_progress",
    "retry_count": 1,
    "follow_up_count": 0,
}


def encode(event: dict[str, Any], **changes: Any) -> bytes:
    return json.dumps({**event, **changes}).encode()


def reason(raw: bytes) -> str:
    outcome = parse(raw)
    assert isinstance(outcome, Rejection), outcome
    return outcome.reason


@pytest.mark.parametrize(
    "spelling", ["NO-ANSWER", "No_Answer", "no_answer", "no-answer", " No-Answer "]
)
def test_status_spellings_normalise_to_one_status(spelling: str) -> None:
    """Case and '-' versus '_' do not matter."""
    event = parse(encode(CONTACT, status=spelling))
    assert isinstance(event, ContactStatusChanged)
    assert event.status == "no_answer"


def test_call_status_and_batch_status_normalise() -> None:
    """Telephony spellings of call and batch statuses are accepted."""
    record = parse(
        encode(
            CONTACT,
            event_type="call_record.completed",
            execution_id="exec_1",
            call_status="NO-ANSWER",
            is_follow_up=False,
            retry_index=0,
        )
    )
    assert isinstance(record, CallRecordCompleted) and record.call_status == "no_answer"
    batch = parse(
        encode(
            CONTACT,
            event_type="batch.upserted",
            status="In-Progress",
            total_contacts=4,
            created_at="2026-05-08T11:00:00+02:00",
        )
    )
    assert isinstance(batch, BatchUpserted)
    assert batch.status == "in_progress"
    assert iso(batch.created_at) == "2026-05-08T09:00:00Z"


def test_unknown_fields_are_ignored() -> None:
    """Forward compatible: extra fields do not reject an event."""
    assert isinstance(parse(encode(CONTACT, shiny_new_field={"a": 1})), ContactStatusChanged)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "invalid_json"),
        (b"{not json", "invalid_json"),
        (b"\xff\xfe\x00", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"text"', "not_an_object"),
        (b"42", "not_an_object"),
        (encode(CONTACT, event_type="contact.deleted"), "unknown_event_type"),
        (encode(CONTACT, status="teleported"), "unknown_status"),
        (encode(CONTACT, retry_count=-1), "negative_count"),
        (encode(CONTACT, follow_up_count=-3), "negative_count"),
        (encode(CONTACT, version="3"), "invalid_field"),
        (encode(CONTACT, version=0), "invalid_field"),
        (encode(CONTACT, version=True), "invalid_field"),
        (encode(CONTACT, retry_count=1.5), "invalid_field"),
        (encode(CONTACT, occurred_at="yesterday"), "invalid_field"),
        (encode(CONTACT, campaign_id=7), "invalid_field"),
        (encode(CONTACT, contact_id="con 1"), "invalid_id"),
        (encode(CONTACT, campaign_id="cmp_{a}"), "invalid_id"),
        (encode(CONTACT, batch_id="btc:1"), "invalid_id"),
        (encode(CONTACT, contact_id="con_*"), "invalid_id"),
        (encode(CONTACT, contact_id="кон_1"), "invalid_id"),
    ],
)
def test_bad_input_has_a_machine_readable_reason(raw: bytes, expected: str) -> None:
    """Every kind of bad input maps to its reason."""
    assert reason(raw) == expected


@pytest.mark.parametrize("field", ["event_id", "event_type", "version", "contact_id", "status"])
def test_missing_fields_are_named(field: str) -> None:
    """A missing field is rejected and named in the message."""
    event = dict(CONTACT)
    del event[field]
    outcome = parse(json.dumps(event).encode())
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "missing_field"
    assert field in outcome.message


BATCH: dict[str, Any] = {
    **CONTACT,
    "event_type": "batch.upserted",
    "status": "pending",
    "total_contacts": 1,
    "created_at": "2026-05-08T08:00:00Z",
}


@pytest.mark.parametrize("field", ["created_at", "occurred_at"])
@pytest.mark.parametrize(
    "moment",
    [
        "0001-01-01T00:00:00Z",  # a clock type's zero value
        "1969-12-31T23:59:59.999999Z",
        "1970-01-01T00:30:00+01:00",  # 1969-12-31T23:30Z
        "2199-12-31T23:00:00-02:00",  # 2200-01-01T01:00Z
        "2200-01-01T00:00:00Z",
        "2300-01-01T00:00:00.000001Z",  # past 2**53 microseconds: no exact index score
        "9999-12-31T23:59:59Z",
    ],
)
def test_times_outside_1970_to_2200_are_rejected(field: str, moment: str) -> None:
    """`created_at` and `occurred_at` must lie in [1970-01-01T00:00Z, 2200-01-01T00:00Z):
    a batch index score (microseconds since the epoch in a Redis double) is exact only
    within 2**53 microseconds of the epoch. Anything else is dead-lettered as
    `time_out_of_range`, naming the field, on the fast path and the models' alike."""
    outcome = parse(encode(BATCH, **{field: moment}))
    assert isinstance(outcome, Rejection), outcome
    assert outcome.reason == "time_out_of_range"
    assert outcome.message.startswith(f"{field} must be from 1970-01-01T00:00:00Z")
    assert validate(encode(BATCH, **{field: moment})) == outcome
    if field == "occurred_at":
        contact = parse(encode(CONTACT, occurred_at=moment))
        assert isinstance(contact, Rejection) and contact.reason == "time_out_of_range"


@pytest.mark.parametrize(
    "moment",
    [
        "1970-01-01T00:00:00Z",
        "1970-01-01T00:00:00",  # naive: UTC
        "1970-01-01T05:30:00+05:30",
        "2199-12-31T23:59:59.999999Z",
        "2199-12-31T20:00:00-03:59",
    ],
)
def test_times_at_the_edges_of_the_range_are_accepted(moment: str) -> None:
    """The first instant of 1970 (UTC) is in, the last microsecond before 2200 too."""
    batch = parse(encode(BATCH, created_at=moment, occurred_at=moment))
    assert isinstance(batch, BatchUpserted), batch


def test_oversized_messages_are_rejected_before_parsing() -> None:
    """More than the limit is refused whatever it holds."""
    raw = encode(CONTACT, padding="x" * 70_000)
    outcome = parse(raw, max_bytes=64 * 1024)
    assert isinstance(outcome, Rejection) and outcome.reason == "oversized"


@given(st.binary(max_size=300))
def test_parse_never_raises(raw: bytes) -> None:
    """Arbitrary bytes give an event or a rejection, never an exception."""
    outcome = parse(raw)
    assert isinstance(
        outcome, Rejection | ContactStatusChanged | BatchUpserted | CallRecordCompleted
    )


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", max_size=25))
def test_normalise_is_idempotent(text: str) -> None:
    """Normalising twice changes nothing more."""
    once = normalise_status(text)
    assert normalise_status(once) == once
    assert "-" not in once and once == once.lower()


def framed(payload: bytes, schema_id: int = 42) -> bytes:
    """A value as a schema-registry JSON serializer writes it."""
    return b"\x00" + schema_id.to_bytes(4, "big") + payload


@pytest.mark.parametrize("schema_id", [0, 1, 42, 2**31 - 1])
def test_schema_registry_framed_json_is_the_same_event(schema_id: int) -> None:
    """Magic byte 0 + a 4-byte schema id before the JSON: the same event as the bare JSON,
    messy spellings included."""
    for raw in (encode(CONTACT), encode(CONTACT, status="IN-PROGRESS")):
        assert parse(framed(raw, schema_id)) == parse(raw)
    assert isinstance(parse(framed(encode(CONTACT), schema_id)), ContactStatusChanged)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\x00", "invalid_json"),
        (b"\x00\x00\x00\x00\x07", "invalid_json"),
        (framed(b"not json"), "invalid_json"),
        (framed(b"[1]"), "not_an_object"),
        (framed(encode(CONTACT, status="teleported")), "unknown_status"),
    ],
)
def test_bad_framed_values_are_rejected_by_their_payload(raw: bytes, expected: str) -> None:
    """A frame without a payload, or with a bad one, has the payload's reason."""
    assert reason(raw) == expected
