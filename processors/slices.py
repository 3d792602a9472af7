"""Group validated events into per-campaign slices and encode them for APPLY_SLICE (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from processors import keys
from processors.events import BatchUpserted, ContactStatusChanged, Event
from processors.lua import CALL_CODES, CONTACT_CODES, FIELDS_PER_EVENT, campaign_keys

if TYPE_CHECKING:
    from processors.transitions import BatchState, ContactState, RecordState


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


def iso(moment: datetime) -> str:
    """ISO-8601 in UTC with a `Z`."""
    return moment.isoformat().replace("+00:00", "Z")


class _Call:
    """KEYS and ARGV of one APPLY_SLICE call under construction."""

    def __init__(self, campaign_id: str, fence_field: str, epoch: int) -> None:
        self.campaign_id = campaign_id
        self.keys = campaign_keys(campaign_id)
        self.argv = [fence_field, str(epoch)]
        self._index: dict[str, int] = {}

    def slot(self, key: str) -> str:
        position = self._index.get(key)
        if position is None:
            self.keys.append(key)
            position = self._index[key] = len(self.keys)
        return str(position)

    def batch(
        self, offset: int, org: str, version: int, batch_id: str, status: str,
        total: int, created_at: str, created_ms: int | None, occurred: int,
    ) -> None:  # fmt: skip
        bkey = self.slot(keys.batch(self.campaign_id, batch_id))
        score = "+inf" if created_ms is None else str(created_ms)
        self.argv += ["b", str(offset), org, str(version), batch_id, bkey, "0", status]
        self.argv += [str(total), created_at, score, str(occurred)]

    def contact(
        self, offset: int, org: str, version: int, contact_id: str, status: str,
        retry_count: int, batch_id: str, occurred: int,
    ) -> None:  # fmt: skip
        skey = self.slot(keys.contact_state(self.campaign_id, contact_id))
        bkey = self.slot(keys.batch(self.campaign_id, batch_id))
        self.argv += ["c", str(offset), org, str(version), contact_id, skey, bkey]
        self.argv += [CONTACT_CODES[status], str(retry_count), batch_id, "", str(occurred)]

    def record(
        self, offset: int, org: str, version: int, execution_id: str, status: str,
        follow_up: bool, occurred: int,
    ) -> None:  # fmt: skip
        skey = self.slot(keys.record_state(self.campaign_id, execution_id))
        self.argv += ["r", str(offset), org, str(version), execution_id, skey, "0"]
        self.argv += [CALL_CODES[status], "1" if follow_up else "0", "", "", str(occurred)]

    def done(self) -> tuple[list[str], list[str]]:
        assert (len(self.argv) - 2) % FIELDS_PER_EVENT == 0
        return self.keys, self.argv


def encode(part: Slice, epoch: int) -> tuple[list[str], list[str]]:
    """KEYS and ARGV of one APPLY_SLICE call (see `lua.APPLY_SLICE`)."""
    call = _Call(part.campaign_id, part.fence_field, epoch)
    for offset, event in part.items:
        org, version = event.organization_id, event.version
        occurred = epoch_ms(event.occurred_at)
        if isinstance(event, BatchUpserted):
            call.batch(
                offset, org, version, event.batch_id, event.status, event.total_contacts,
                iso(event.created_at), epoch_ms(event.created_at), occurred,
            )  # fmt: skip
        elif isinstance(event, ContactStatusChanged):
            call.contact(
                offset, org, version, event.contact_id, event.status, event.retry_count,
                event.batch_id, occurred,
            )  # fmt: skip
        else:
            call.record(
                offset, org, version, event.execution_id, event.call_status,
                event.is_follow_up, occurred,
            )  # fmt: skip
    return call.done()


def encode_repair(
    campaign_id: str,
    organization_id: str,
    batches: Iterable[tuple[str, BatchState]] = (),
    contacts: Iterable[tuple[str, ContactState]] = (),
    records: Iterable[tuple[str, RecordState]] = (),
) -> tuple[list[str], list[str]]:
    """An APPLY_SLICE call in repair mode that applies entity states as if re-delivered."""
    call = _Call(campaign_id, "", 0)
    for batch_id, b in batches:
        if b.version == 0:
            continue  # known only from contacts: re-applying them recreates it
        call.batch(
            0, organization_id, b.version, batch_id, b.status, b.total_contacts or 0,
            b.created_at or "", b.created_ms, 0,
        )  # fmt: skip
    for contact_id, c in contacts:
        call.contact(
            0, organization_id, c.version, contact_id, c.status, c.retry_count, c.batch_id, 0
        )
    for execution_id, r in records:
        call.record(0, organization_id, r.version, execution_id, r.status, r.follow_up, 0)
    return call.done()
