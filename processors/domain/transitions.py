"""The pure model of what Redis holds for one campaign: state transitions and counters.

`apply(state, event)` mirrors the Lua script event for event (same outcome codes, same
batch moves and disappearing contact-only batches); `stats_counters` and `batch_counters`
recount the counter hashes from entity state. Reconciliation and the property tests use
it; the Lua script is checked against it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from processors.domain.contract import (
    APPLIED,
    CALL_BY_CODE,
    CONTACT_BY_CODE,
    MINUTE_RETENTION_MS,
    QUARTER_RETENTION_MS,
    STALE,
    TENANT_MISMATCH,
)
from processors.domain.events import BatchUpserted, ContactStatusChanged, Event
from processors.domain.times import epoch_ms, epoch_us, iso, talk_ms


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
    minute: int | None = None  # of occurred_at, since the epoch (None: stored before series)
    talk_ms: int = 0  # duration in milliseconds


@dataclass(slots=True)
class BatchState:
    version: int  # 0: known only from its contacts
    status: str = "pending"
    total_contacts: int | None = None
    created: datetime | None = None
    known: int = 0  # contacts whose latest version names the batch

    @property
    def created_at(self) -> str | None:
        """created_at as the API shows it."""
        return iso(self.created) if self.created is not None else None

    @property
    def created_us(self) -> int | None:
        """created_at in microseconds since the epoch (the batch index score)."""
        return epoch_us(self.created) if self.created is not None else None


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
        return _apply_batch(state, event)
    if isinstance(event, ContactStatusChanged):
        return _apply_contact(state, event)
    record = state.records.get(event.execution_id)
    if record is not None and event.version <= record.version:
        return STALE
    state.records[event.execution_id] = RecordState(
        event.version,
        event.call_status,
        event.is_follow_up,
        epoch_ms(event.occurred_at) // 60_000,
        talk_ms(event.duration_seconds),
    )
    return APPLIED


def _apply_batch(state: CampaignState, event: BatchUpserted) -> int:
    batch = state.batches.get(event.batch_id)
    if batch is None:
        batch = state.batches[event.batch_id] = BatchState(version=0)
    elif event.version <= batch.version:
        return STALE
    batch.version, batch.status = event.version, event.status
    batch.total_contacts, batch.created = event.total_contacts, event.created_at
    return APPLIED


def _apply_contact(state: CampaignState, event: ContactStatusChanged) -> int:
    contact = state.contacts.get(event.contact_id)
    if contact is None:
        _join(state, event.batch_id)
    elif event.version <= contact.version:
        return STALE  # whatever batch it names
    elif contact.batch_id != event.batch_id:  # a move
        _leave(state, contact.batch_id)
        _join(state, event.batch_id)
    state.contacts[event.contact_id] = ContactState(
        event.version, event.status, event.retry_count, event.batch_id
    )
    return APPLIED


def _join(state: CampaignState, batch_id: str) -> None:
    state.batches.setdefault(batch_id, BatchState(version=0)).known += 1


def _leave(state: CampaignState, batch_id: str) -> None:
    """A contact moved away; a batch known only from contacts goes with the last one.

    Otherwise the batches listed would depend on the delivery order: a contact-only batch
    seen through a version that was later superseded would stay behind.
    """
    batch = state.batches[batch_id]
    batch.known -= 1
    if batch.known == 0 and batch.version == 0:
        del state.batches[batch_id]


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
    """A contact's state as stored: `version|status code|retry_count|batch_id` (and, for
    a terminal status, `|minute` for batch progress, which the state model leaves out)."""
    version, code, retry, batch_id, *_ = packed.split("|")
    return ContactState(int(version), CONTACT_BY_CODE[code], int(retry), batch_id)


def unpack_record(packed: str) -> RecordState:
    """A call record's state as stored: `version|status code|follow-up flag|minute|talk ms`
    (the last two in base 36; absent in states stored before time series)."""
    version, code, follow_up, *time = packed.split("|")
    state = RecordState(int(version), CALL_BY_CODE[code], follow_up == "1")
    if time:
        state.minute, state.talk_ms = int(time[0], 36), int(time[1], 36)
    return state


#: Buckets per resolution: (span of one series hash in ms, bucket length in ms, retention
#: after the hash's end in ms) -- as the apply script keeps them.
SERIES_LAYOUT: dict[str, tuple[int, int, int]] = {
    "m": (3_600_000, 60_000, MINUTE_RETENTION_MS),
    "q": (86_400_000, 900_000, QUARTER_RETENTION_MS),
}


def series_of(record: RecordState, now_ms: int) -> dict[tuple[str, str], int]:
    """What a call record adds to its time-series buckets still kept at `now_ms`, as the
    recount names them: (`series:<m|q><hour|day>`, `<bucket>:<slot>`) -> amount (slots 1-4
    the outcomes in contract order, 5 follow-up, 6 talk ms)."""
    from processors.domain.contract import CALL_STATUSES

    if record.minute is None:
        return {}
    out: dict[tuple[str, str], int] = {}
    at = record.minute * 60_000
    for kind, (span, step, retention) in SERIES_LAYOUT.items():
        number = at // span
        if (number + 1) * span + retention <= now_ms:
            continue
        scope, bucket = f"series:{kind}{number}", (at % span) // step
        out[scope, f"{bucket}:{CALL_STATUSES.index(record.status) + 1}"] = 1
        if record.follow_up:
            out[scope, f"{bucket}:5"] = 1
        if record.talk_ms:
            out[scope, f"{bucket}:6"] = record.talk_ms
    return out
