"""Group validated events into per-campaign slices and encode them for APPLY_SLICE (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from processors import keys
from processors.events import (
    BATCH_STATUSES,
    BatchUpserted,
    ContactStatusChanged,
    Event,
)
from processors.lua import CALL_CODES, CONTACT_CODES, FIELDS_PER_EVENT


@dataclass(slots=True)
class Slice:
    """The events of one campaign read from one topic partition, in offset order."""

    campaign_id: str
    topic: str
    partition: int
    items: list[tuple[int, Event]] = field(default_factory=list)

    @property
    def fence_field(self) -> str:
        """The field of the campaign's fence hash that tracks this partition."""
        return f"{self.topic}:{self.partition}"


def group(events: Iterable[tuple[str, int, int, Event]]) -> list[Slice]:
    """Split `(topic, partition, offset, event)` tuples into slices, keeping offset order."""
    slices: dict[tuple[str, str, int], Slice] = {}
    for topic, partition, offset, event in events:
        key = (event.campaign_id, topic, partition)
        current = slices.get(key)
        if current is None:
            current = slices[key] = Slice(event.campaign_id, topic, partition)
        current.items.append((offset, event))
    for current in slices.values():
        current.items.sort(key=lambda item: item[0])
    return list(slices.values())


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch."""
    return int(moment.timestamp() * 1000)


def encode(part: Slice, epoch: int) -> tuple[list[str], list[str]]:
    """KEYS and ARGV of one APPLY_SLICE call (see `lua.APPLY_SLICE`)."""
    cid = part.campaign_id
    call_keys = [keys.stats(cid), keys.fence(cid), keys.batch_index(cid)]
    call_keys.extend(keys.batch_index(cid, status) for status in BATCH_STATUSES)
    index: dict[str, int] = {}

    def slot(key: str) -> str:
        position = index.get(key)
        if position is None:
            call_keys.append(key)
            position = index[key] = len(call_keys)
        return str(position)

    argv = [part.fence_field, str(epoch)]
    for offset, event in part.items:
        head = [str(offset), event.organization_id, str(event.version)]
        occurred = str(epoch_ms(event.occurred_at))
        if isinstance(event, BatchUpserted):
            argv += ["b", *head, event.batch_id, slot(keys.batch(cid, event.batch_id)), "0"]
            argv += [
                event.status,
                str(event.total_contacts),
                event.created_at.isoformat().replace("+00:00", "Z"),
                str(epoch_ms(event.created_at)),
                occurred,
            ]
        elif isinstance(event, ContactStatusChanged):
            argv += ["c", *head, event.contact_id]
            argv += [
                slot(keys.contact_state(cid, event.contact_id)),
                slot(keys.batch(cid, event.batch_id)),
                CONTACT_CODES[event.status],
                str(event.retry_count),
                event.batch_id,
                "",
                occurred,
            ]
        else:
            argv += ["r", *head, event.execution_id]
            argv += [
                slot(keys.record_state(cid, event.execution_id)),
                "0",
                CALL_CODES[event.call_status],
                "1" if event.is_follow_up else "0",
                "",
                "",
                occurred,
            ]
    assert (len(argv) - 2) % FIELDS_PER_EVENT == 0
    return call_keys, argv
