"""The pure model of what Redis holds for one campaign: state transitions and counters.

`apply(state, event)` mirrors the Lua script event for event (same outcome codes);
`counter_fields` recounts the counter hashes from entity state. Reconciliation and the
property tests use it; the Lua script is checked against it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from processors.domain.events import BatchUpserted, ContactStatusChanged, Event
from processors.store.lua import APPLIED, BATCH_MISMATCH, STALE, TENANT_MISMATCH
from processors.store.slices import epoch_ms, iso


@dataclass(slots=True)
class ContactState:
    version: int
    status: str
    retry_count: int
    batch_id: str


@dataclass(slots=True)
class RecordState:
    version: int
    status: str
    follow_up: bool


@dataclass(slots=True)
class BatchState:
    version: int  # 0: known only from its contacts
    status: str = "pending"
    total_contacts: int | None = None
    created: datetime | None = None

    @property
    def created_at(self) -> str | None:
        """created_at as the API shows it."""
        return iso(self.created) if self.created is not None else None

    @property
    def created_ms(self) -> int | None:
        """created_at in ms (the batch index score)."""
        return epoch_ms(self.created) if self.created is not None else None


@dataclass(slots=True)
class CampaignState:
    organization_id: str | None = None
    batches: dict[str, BatchState] = field(default_factory=dict)
    contacts: dict[str, ContactState] = field(default_factory=dict)
    records: dict[str, RecordState] = field(default_factory=dict)


def apply(state: CampaignState, event: Event) -> int:
    """Fold one event into the state; returns the Lua outcome code."""
    if state.organization_id is None:
        state.organization_id = event.organization_id
    if event.organization_id != state.organization_id:
        return TENANT_MISMATCH
    if isinstance(event, BatchUpserted):
        batch = state.batches.get(event.batch_id)
        if batch is not None and event.version <= batch.version:
            return STALE
        state.batches[event.batch_id] = BatchState(
            event.version, event.status, event.total_contacts, event.created_at
        )
        return APPLIED
    if isinstance(event, ContactStatusChanged):
        contact = state.contacts.get(event.contact_id)
        if contact is not None:
            if contact.batch_id != event.batch_id:
                return BATCH_MISMATCH
            if event.version <= contact.version:
                return STALE
        state.batches.setdefault(event.batch_id, BatchState(version=0))
        state.contacts[event.contact_id] = ContactState(
            event.version, event.status, event.retry_count, event.batch_id
        )
        return APPLIED
    record = state.records.get(event.execution_id)
    if record is not None and event.version <= record.version:
        return STALE
    state.records[event.execution_id] = RecordState(
        event.version, event.call_status, event.is_follow_up
    )
    return APPLIED


def _nonzero(counts: Counter[str]) -> dict[str, int]:
    return {name: n for name, n in counts.items() if n}


def stats_counters(state: CampaignState) -> dict[str, int]:
    """The counter fields of the campaign's stats hash (zeros omitted)."""
    counts: Counter[str] = Counter()
    for contact in state.contacts.values():
        counts[f"contacts:{contact.status}"] += 1
        if contact.status == "retrying":
            counts[f"retry:{contact.retry_count}"] += 1
    counts["contacts"] = len(state.contacts)
    for batch in state.batches.values():
        counts[f"batches:{batch.status}"] += 1
    for record in state.records.values():
        counts[f"calls:{record.status}"] += 1
        if record.follow_up:
            counts["calls:follow_up"] += 1
    return _nonzero(counts)


def batch_counters(state: CampaignState) -> dict[str, dict[str, int]]:
    """Per batch: the counter fields of its hash (`known`, `contacts:*`, `retry:*`)."""
    per_batch: dict[str, Counter[str]] = {batch_id: Counter() for batch_id in state.batches}
    for contact in state.contacts.values():
        counts = per_batch[contact.batch_id]
        counts["known"] += 1
        counts[f"contacts:{contact.status}"] += 1
        if contact.status == "retrying":
            counts[f"retry:{contact.retry_count}"] += 1
    return {batch_id: _nonzero(counts) for batch_id, counts in per_batch.items()}


def unpack_contact(packed: str) -> ContactState:
    """A contact's state as stored: `version|status code|retry_count|batch_id`."""
    from processors.store.lua import CONTACT_BY_CODE

    version, code, retry, batch_id = packed.split("|", 3)
    return ContactState(int(version), CONTACT_BY_CODE[code], int(retry), batch_id)


def unpack_record(packed: str) -> RecordState:
    """A call record's state as stored: `version|status code|follow-up flag`."""
    from processors.store.lua import CALL_BY_CODE

    version, code, follow_up = packed.split("|")
    return RecordState(int(version), CALL_BY_CODE[code], follow_up == "1")
