"""Group validated events into per-campaign slices and encode them for APPLY_SLICE (pure).

A slice is every event of one campaign in one fetched batch, from any partition: one
script call applies it. Events travel as one string (fields separated by US, events by
RS), which keeps the command small to pack and cheap to split in Lua.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from processors.domain.contract import CALL_CODES, CONTACT_CODES
from processors.domain.events import BatchUpserted, CallRecordCompleted, ContactStatusChanged, Event
from processors.domain.times import epoch_us, talk_ms
from processors.store import keys
from processors.store.lua import EVENT_SEP, FIELD_SEP, campaign_keys

if TYPE_CHECKING:
    from processors.domain.transitions import BatchState, ContactState, RecordState

TopicPartition = tuple[str, int]


@dataclass(slots=True)
class Slice:
    """The events of one campaign in one fetched batch, in offset order per partition."""

    campaign_id: str
    items: list[tuple[str, int, int, Event]] = field(default_factory=list)


def group(events: Iterable[tuple[str, int, int, Event]]) -> list[Slice]:
    """Split `(topic, partition, offset, event)` tuples into one slice per campaign."""
    slices: dict[str, Slice] = {}
    for item in events:
        campaign_id = item[3].campaign_id
        current = slices.get(campaign_id)
        if current is None:
            current = slices[campaign_id] = Slice(campaign_id)
        current.items.append(item)
    for current in slices.values():
        current.items.sort(key=lambda item: item[:3])
    return list(slices.values())


def _fresh_entity(entity_id: str) -> str:
    """`digest` US `bucket hash` of an entity id."""
    digest = keys.fresh_digest(entity_id)
    return f"{digest}{FIELD_SEP}{keys.bucket_hash(digest)}"


#: Contacts come back again and again (each status change); call records mostly once, so
#: theirs are worked out afresh rather than pushed through a cache they would only churn.
_entity = lru_cache(maxsize=1 << 18)(_fresh_entity)

US = FIELD_SEP


def _encoded(fence: int, offset: int, event: Event) -> str:
    """One event as APPLY_SLICE reads it (the hot path: one f-string per kind)."""
    moment = event.occurred_at
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    occurred = int(moment.timestamp() * 1000)
    if isinstance(event, ContactStatusChanged):
        return (
            f"{fence}{US}{offset}{US}{event.organization_id}{US}{event.version}{US}c{US}"
            f"{_entity(event.contact_id)}{US}{CONTACT_CODES[event.status]}{US}"
            f"{event.retry_count}{US}{event.batch_id}{US}{US}{occurred}"
        )
    if isinstance(event, CallRecordCompleted):
        return (
            f"{fence}{US}{offset}{US}{event.organization_id}{US}{event.version}{US}r{US}"
            f"{_fresh_entity(event.execution_id)}{US}{CALL_CODES[event.call_status]}{US}"
            f"{'1' if event.is_follow_up else '0'}{US}{talk_ms(event.duration_seconds)}"
            f"{US}{US}{occurred}"
        )
    fields = (
        str(fence), str(offset), event.organization_id, str(event.version),
        "b", event.batch_id, "0", event.status, str(event.total_contacts),
        "", str(epoch_us(event.created_at)), str(occurred),
    )  # fmt: skip
    return US.join(fields)


class _Call:
    """KEYS and ARGV of one APPLY_SLICE call under construction."""

    def __init__(self, campaign_id: str, fences: list[tuple[str, int]]) -> None:
        self.campaign_id = campaign_id
        self.fences = fences
        self.events: list[str] = []

    def add(self, fence: int, offset: int, event: Event) -> None:
        self.events.append(_encoded(fence, offset, event))

    def done(self) -> tuple[list[str], list[str]]:
        argv = [str(len(self.fences))]
        argv += [name for name, _ in self.fences]
        argv += [str(epoch) for _, epoch in self.fences]
        argv.append(EVENT_SEP.join(self.events))  # last: empty when there is nothing to apply
        return campaign_keys(self.campaign_id), argv


def encode(part: Slice, epochs: Mapping[TopicPartition, int]) -> tuple[list[str], list[str]]:
    """KEYS and ARGV of one APPLY_SLICE call (see `lua.APPLY_SLICE`)."""
    partitions = sorted({(topic, partition) for topic, partition, _, _ in part.items})
    fence_index = {tp: n for n, tp in enumerate(partitions, start=1)}
    call = _Call(part.campaign_id, [(f"{t}:{p}", epochs[(t, p)]) for t, p in partitions])
    call.events = [
        _encoded(fence_index[(topic, partition)], offset, event)
        for topic, partition, offset, event in part.items
    ]
    return call.done()


def encode_repair(
    campaign_id: str,
    organization_id: str,
    batches: Iterable[tuple[str, BatchState]] = (),
    contacts: Iterable[tuple[str, ContactState]] = (),
    records: Iterable[tuple[str, RecordState]] = (),
) -> tuple[list[str], list[str]]:
    """An APPLY_SLICE call in repair mode: entity states applied as if re-delivered."""
    call = _Call(campaign_id, [])
    common: dict[str, Any] = {
        "event_id": "repair",
        "organization_id": organization_id,
        "campaign_id": campaign_id,
        "occurred_at": datetime.fromtimestamp(0, UTC),
    }
    for batch_id, b in batches:
        if b.version == 0:
            continue  # known only from its contacts: re-applying them recreates it
        call.add(0, 0, BatchUpserted(
            **common, version=b.version, batch_id=batch_id,
            status=b.status, total_contacts=b.total_contacts or 0,
            created_at=b.created or datetime.fromtimestamp(0, UTC),
        ))  # fmt: skip
    for contact_id, c in contacts:
        call.add(0, 0, ContactStatusChanged(
            **common, version=c.version,
            batch_id=c.batch_id, contact_id=contact_id, status=c.status,
            retry_count=c.retry_count, follow_up_count=0,
        ))  # fmt: skip
    for execution_id, r in records:
        occurred = common["occurred_at"] + timedelta(minutes=r.minute or 0)
        call.add(0, 0, CallRecordCompleted(
            **{**common, "occurred_at": occurred}, version=r.version, batch_id="",
            contact_id="", execution_id=execution_id, call_status=r.status,
            is_follow_up=r.follow_up, retry_index=0, duration_seconds=r.talk_ms / 1000,
        ))  # fmt: skip
    return call.done()
