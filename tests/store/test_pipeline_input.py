"""The pipeline on what real producers send: tombstones, null keys, framed JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from processors import metrics
from processors.store import keys
from processors.store.client import Store
from processors.worker.pipeline import BatchProcessor

EVENT: dict[str, Any] = {
    "event_id": "evt_1",
    "event_type": "contact.status_changed",
    "organization_id": "org_p",
    "campaign_id": "cmp_p",
    "occurred_at": "2026-05-08T09:00:00Z",
    "version": 1,
    "batch_id": "btc_1",
    "contact_id": "con_1",
    "status": "pending",
    "retry_count": 0,
    "follow_up_count": 0,
}


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def contact(n: int, **changes: Any) -> bytes:
    return json.dumps({**EVENT, "event_id": f"e{n}", "contact_id": f"con_{n}", **changes}).encode()


async def test_tombstones_are_skipped_and_counted_never_dead_lettered(store: Store) -> None:
    """Null values are not events: counted as `tombstone` (and in the metric), never
    dead-lettered; framed JSON and null keys are ordinary events; every record has one
    outcome."""
    letters: list[bytes] = []

    async def send(key: bytes | None, value: bytes, headers: list[Any]) -> None:
        letters.append(value)

    async def epoch(topic: str, partition: int) -> int:
        return 1

    processor = BatchProcessor(store, send, epoch)
    records = [
        Rec("dialer.contacts", 0, 0, b"con_0", contact(0)),
        Rec("dialer.contacts", 0, 1, b"con_0", None),
        Rec("dialer.contacts", 0, 2, None, b"\x00\x00\x00\x00\x09" + contact(1)),
        Rec("dialer.contacts", 0, 3, None, None),
        Rec("dialer.contacts", 0, 4, b"con_2", contact(2, status="RETRYING", retry_count=1)),
        Rec("dialer.contacts", 0, 5, b"con_x", b"not json"),
    ]
    before = metrics.TOMBSTONES.labels("dialer.contacts")._value.get()
    tally = await processor.process(records)
    assert tally == {"applied": 3, "tombstone": 2, "dead_lettered": 1}
    assert sum(tally.values()) == len(records)
    assert [json.loads(letter)["reason"] for letter in letters] == ["invalid_json"]
    assert metrics.TOMBSTONES.labels("dialer.contacts")._value.get() - before == 2
    stats = await store.client.hgetall(keys.stats("cmp_p"))
    assert stats["contacts:pending"] == "2" and stats["contacts:retrying"] == "1"
