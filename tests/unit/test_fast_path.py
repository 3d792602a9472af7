"""The msgspec fast path accepts nothing the pydantic models refuse, with equal values."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.domain.contract import Rejection
from processors.domain.events import _DECODER, _NANOS, _normalised, parse
from processors.domain.schema import validate
from tests.streams import entity_event

FIELDS = [
    "event_id", "event_type", "organization_id", "campaign_id", "occurred_at", "version",
    "batch_id", "contact_id", "execution_id", "status", "call_status", "retry_count",
    "follow_up_count", "total_contacts", "created_at", "is_follow_up", "retry_index",
    "duration_seconds",
]  # fmt: skip

ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from([
        "NO-ANSWER", "In_Progress", " pending ", "completed ", "2026-05-08T09:00:00",
        "2026-05-08 09:00:00Z", "2026-05-08T09:00:00.123456789Z", "2026-05-08",
        "2026-05-08T09:00:00+05:30", "con {1}", "cmp:1", "ünïcode", "", "a" * 129,
        "batch.upserted", "contact.status_changed", "call_record.completed", "1", "1.0",
        "0001-01-01T00:00:00Z", "1969-12-31T23:59:59.999999Z", "1970-01-01T00:00:00Z",
        "a\x1fb", "a\x1eb", "\x1f", "x\n", "a" * 128 + "\x1f" + "b" * 128, "e" * 257,
        "1970-01-01T00:30:00+01:00", "1970-01-01T00:00:00", "2199-12-31T23:59:59.999999Z",
        "2199-12-31T23:00:00-02:00", "2200-01-01T00:00:00Z", "2300-01-01T00:00:00.000001Z",
        "9999-12-31T23:59:59Z",
    ]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["batch", "contact", "record"]))
    event: dict[str, Any] = entity_event("cmp_f", "org_f", kind, draw(st.integers(0, 9)), 1)
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from(FIELDS))
        if draw(st.booleans()) and field in event:
            del event[field]
        else:
            event[field] = draw(ODD_VALUES)
    return json.dumps(event).encode()


def comparable(fields: dict[str, Any]) -> dict[str, Any]:
    fields = {k: v for k, v in fields.items() if k != "event_type"}
    return fields


@settings(max_examples=400, deadline=None)
@given(messages())
def test_fast_path_is_a_subset_of_the_models(raw: bytes) -> None:
    """Whatever msgspec accepts, pydantic accepts with the same values (`parse` leaves
    sub-microsecond fractions to pydantic: msgspec rounds them, pydantic truncates)."""
    if _NANOS.search(raw):
        return
    try:
        fast = _DECODER.decode(raw)
    except msgspec.MsgspecError:
        return
    normal = _normalised(fast)
    if normal is None:
        return
    model = validate(raw)
    assert not isinstance(model, Rejection), (raw, model)
    assert comparable(msgspec.structs.asdict(normal)) == comparable(model.model_dump())


@settings(max_examples=400, deadline=None)
@given(messages())
def test_parse_decides_like_the_models(raw: bytes) -> None:
    """parse() accepts exactly what the models accept, and rejects with their reason."""
    parsed, model = parse(raw), validate(raw)
    if isinstance(model, Rejection):
        assert parsed == model
    else:
        assert not isinstance(parsed, Rejection)
        assert comparable(msgspec.structs.asdict(parsed)) == comparable(model.model_dump())


def test_simulated_traffic_takes_the_fast_path() -> None:
    """Ordinary events, messy statuses included, never need the slow path."""
    import itertools

    from processors.tools.simulate import Simulation

    for event in itertools.islice(Simulation(seed=3, messy_rate=0.5).events(), 2000):
        decoded = _DECODER.decode(json.dumps(event).encode())
        assert _normalised(decoded) is not None, event


@pytest.mark.parametrize("field", ["organization_id", "campaign_id", "batch_id", "contact_id"])
@pytest.mark.parametrize("value", ["a\x1fb", "a" * 128 + "\x1f" + "b" * 128, "\x1f", "a\x1e"])
def test_an_id_holding_a_separator_is_invalid(field: str, value: str) -> None:
    """The ids are checked joined by US: one holding US (or RS) is still an invalid id,
    as the models say, never two ids."""
    event = entity_event("cmp_f", "org_f", "record", 1, 1)
    event[field] = value
    raw = json.dumps(event).encode()
    outcome = parse(raw)
    assert isinstance(outcome, Rejection) and outcome.reason == "invalid_id", outcome
    assert outcome == validate(raw)
