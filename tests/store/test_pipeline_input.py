"""The pipeline on what real producers send: tombstones, null keys, framed JSON."""

from __future__ import annotations

import json
from typing import Any

from processors import metrics
from processors.store import keys
from processors.store.client import Store
from processors.worker.pipeline import BatchProcessor
from tests.store.test_reconcile import Rec

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


def collecting(store: Store) -> tuple[BatchProcessor, list[bytes]]:
    """A pipeline on epoch 1 whose dead letters are collected in the list."""
    letters: list[bytes] = []

    async def send(key: bytes | None, value: bytes, headers: list[Any]) -> None:
        letters.append(value)

    async def epoch(topic: str, partition: int) -> int:
        return 1

    return BatchProcessor(store, send, epoch), letters


def contact(n: int, **changes: Any) -> bytes:
    return json.dumps({**EVENT, "event_id": f"e{n}", "contact_id": f"con_{n}", **changes}).encode()


async def test_tombstones_are_skipped_and_counted_never_dead_lettered(store: Store) -> None:
    """Null values are not events: counted as `tombstone` (and in the metric), never
    dead-lettered; framed JSON and null keys are ordinary events; every record has one
    outcome."""
    processor, letters = collecting(store)
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


async def test_times_out_of_range_are_dead_lettered_and_change_nothing(store: Store) -> None:
    """A batch created in year 1 or 2300 (outside [1970, 2200), where its microsecond index
    score would not be exact) is dead-lettered as `time_out_of_range` naming the field, as
    is an event that occurred out of range; neither changes a counter or the batch index."""
    letters: list[bytes] = []

    async def send(key: bytes | None, value: bytes, headers: list[Any]) -> None:
        letters.append(value)

    async def epoch(topic: str, partition: int) -> int:
        return 1

    def batch(n: int, **changes: Any) -> bytes:
        event = {**EVENT, "event_type": "batch.upserted", "event_id": f"b{n}"}
        event.update(batch_id=f"btc_{n}", status="pending", total_contacts=1)
        event.update({"created_at": "2026-05-01T08:00:00Z", **changes})
        return json.dumps(event).encode()

    records = [
        Rec("dialer.batches", 0, 0, b"btc_1", batch(1, created_at="2300-01-01T00:00:00.000001Z")),
        Rec("dialer.batches", 0, 1, b"btc_2", batch(2, created_at="0001-01-01T00:00:00Z")),
        Rec("dialer.batches", 0, 2, b"btc_3", batch(3, occurred_at="1969-12-31T23:59:59Z")),
        Rec("dialer.contacts", 0, 0, b"con_1", contact(1, occurred_at="2200-01-01T00:00:00Z")),
        Rec("dialer.batches", 0, 3, b"btc_4", batch(4, created_at="2199-12-31T23:59:59.999999Z")),
    ]
    tally = await BatchProcessor(store, send, epoch).process(records)
    assert tally == {"applied": 1, "dead_lettered": 4}
    decoded = [json.loads(letter) for letter in letters]
    assert [d["reason"] for d in decoded] == ["time_out_of_range"] * 4
    assert [d["message"].split()[0] for d in decoded] == [
        "created_at",
        "created_at",
        "occurred_at",
        "occurred_at",
    ]
    assert await store.batch_ids("cmp_p") == ["btc_4"]
    stats = await store.client.hgetall(keys.stats("cmp_p"))
    assert stats["batches:pending"] == "1" and "contacts" not in stats


async def test_ids_holding_the_separator_are_dead_lettered_and_change_nothing(
    store: Store,
) -> None:
    """Ids travel to the apply script joined by US: an event with US inside an id is
    dead-lettered as invalid_id, and the valid events of its batch apply exactly."""
    processor, letters = collecting(store)
    records = [
        Rec("dialer.contacts", 0, 0, b"con_0", contact(0)),
        Rec("dialer.contacts", 0, 1, b"con_1", contact(1, batch_id="btc\x1fz")),
        Rec("dialer.contacts", 0, 2, b"con_2", contact(2, organization_id="org\x1fp")),
        Rec("dialer.contacts", 0, 3, b"con_3", contact(3, contact_id="con\x1f3")),
    ]
    tally = await processor.process(records)
    assert tally == {"applied": 1, "dead_lettered": 3}
    assert [json.loads(letter)["reason"] for letter in letters] == ["invalid_id"] * 3
    stats = await store.client.hgetall(keys.stats("cmp_p"))
    assert stats["contacts:pending"] == "1" and stats["events:applied"] == "1"


class _Answering:
    """A store stub whose apply script answers the given codes."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = codes

    async def apply_calls(self, calls: list[Any]) -> list[list[int]]:
        return [self.codes for _ in calls]


async def test_an_unknown_outcome_code_fails_the_batch() -> None:
    """Every record must end in exactly one outcome: codes the pipeline does not know fail
    the batch (retried, never marked) instead of vanishing from the tallies."""
    import pytest

    async def epoch(topic: str, partition: int) -> int:
        return 1

    async def send(key: bytes | None, value: bytes, headers: list[Any]) -> None:
        raise AssertionError("nothing is dead-lettered")

    processor = BatchProcessor(_Answering([4, 4]), send, epoch)  # type: ignore[arg-type]
    records = [Rec("dialer.contacts", 0, n, b"k", contact(n)) for n in range(2)]
    with pytest.raises(ValueError, match="unknown outcome"):
        await processor.process(records)
