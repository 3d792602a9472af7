"""Hypothesis strategies: one campaign's event SET with batch moves, corrections and foreign
organizations, and deliveries of it (any order, duplicates).

The content of an event is a function of (organization, entity, version), as in a real
dialer, so every delivery of the set has one right answer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from tests.oracle import BATCH, CALL, CONTACT

CAMPAIGN = "cmp_p"
OWNER = "org_own"
FOREIGN = "org_foreign"
UPSERTED = ("btc_a", "btc_b", "btc_c")  # batches that may get batch.upserted events
CONTACT_ONLY = ("btc_x", "btc_y")  # batches only ever named by contacts

# Instants microseconds apart (and one a millisecond later), so that the batch order needs
# the full precision, each written in one of several zones.
_T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
INSTANTS = [_T0 + timedelta(microseconds=n) for n in (0, 1, 2, 1000)]
ZONES = [UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30))]

Event = dict[str, Any]


def _common(org: str, kind: str, entity: str, version: int) -> Event:
    return {
        "event_id": f"evt_{org}_{kind}_{entity}_{version}",
        "organization_id": org,
        "campaign_id": CAMPAIGN,
        "occurred_at": f"2026-05-08T09:00:{version:02d}Z",
        "version": version,
    }


@st.composite
def batch_event(draw: st.DrawFn, org: str, batch_id: str, version: int) -> Event:
    created = draw(st.sampled_from(INSTANTS)).astimezone(draw(st.sampled_from(ZONES)))
    return {
        **_common(org, "batch", batch_id, version),
        "event_type": "batch.upserted",
        "batch_id": batch_id,
        "status": draw(st.sampled_from(BATCH)),
        "total_contacts": draw(st.integers(0, 9)),
        "created_at": created.isoformat(),
    }


@st.composite
def contact_event(draw: st.DrawFn, org: str, contact_id: str, version: int) -> Event:
    return {
        **_common(org, "contact", contact_id, version),
        "event_type": "contact.status_changed",
        "batch_id": draw(st.sampled_from(UPSERTED + CONTACT_ONLY)),
        "contact_id": contact_id,
        "status": draw(st.sampled_from(["retrying", *CONTACT])),  # retrying more often
        "retry_count": draw(st.integers(0, 2)),
        "follow_up_count": 0,
    }


@st.composite
def record_event(draw: st.DrawFn, org: str, execution_id: str, version: int) -> Event:
    return {
        **_common(org, "record", execution_id, version),
        "event_type": "call_record.completed",
        "batch_id": "btc_a",
        "contact_id": "con_0",
        "execution_id": execution_id,
        "call_status": draw(st.sampled_from(CALL)),
        "is_follow_up": draw(st.booleans()),
        "retry_index": 0,
    }


def _versions(top: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(1, top), min_size=1, max_size=3, unique=True)


@st.composite
def event_sets(draw: st.DrawFn) -> tuple[list[Event], list[Event]]:
    """(the owner's events, foreign events): several versions per entity, so corrections
    and moves between batches; foreign events may name any entity, batch and version."""
    own: list[Event] = []
    for batch_id in draw(st.lists(st.sampled_from(UPSERTED), max_size=3, unique=True)):
        own += [draw(batch_event(OWNER, batch_id, v)) for v in draw(_versions(3))]
    for n in range(draw(st.integers(1, 6))):
        own += [draw(contact_event(OWNER, f"con_{n}", v)) for v in draw(_versions(4))]
    for n in range(draw(st.integers(0, 3))):
        own += [draw(record_event(OWNER, f"exec_{n}", v)) for v in draw(_versions(3))]
    # version 5 is above every owner version: it would win if it were not refused
    targets = [(batch_event, b) for b in UPSERTED] + [
        (contact_event, "con_0"),
        (contact_event, "con_9"),
    ]
    picks = draw(st.lists(st.sampled_from(targets), max_size=3, unique=True))
    foreign = [draw(make(FOREIGN, entity, 5)) for make, entity in picks]
    return own, foreign


@st.composite
def deliveries(draw: st.DrawFn, own: list[Event], foreign: list[Event]) -> list[Event]:
    """Every event at least once, in any order, the owner's first event first (tenancy is
    decided by the first event applied: foreign events only come after it)."""
    first = draw(st.sampled_from(own))
    rest = own + foreign
    repeated = draw(st.lists(st.sampled_from(rest), max_size=len(rest) // 2))
    return [first, *draw(st.permutations(rest + repeated))]
