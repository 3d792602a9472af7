"""The hot path: one fetched batch of records in, one script call per campaign slice out.

Free of faust: the worker's consumer hands whole record batches here, and tests drive it
directly. Every record ends as exactly one of applied, replayed, stale or dead-lettered.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from processors import metrics
from processors.deadletter import Source, dead_letter
from processors.events import Event, Rejection, parse
from processors.lua import APPLIED, BATCH_MISMATCH, REPLAYED, STALE, TENANT_MISMATCH
from processors.slices import group
from processors.store import Store


class Record(Protocol):
    """What the pipeline needs of a Kafka record (aiokafka's ConsumerRecord fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


SendDeadLetter = Callable[[bytes | None, bytes, list[tuple[str, bytes]]], Awaitable[None]]
EpochOf = Callable[[str, int], Awaitable[int]]

_LUA_REJECTIONS = {
    TENANT_MISMATCH: Rejection("tenant_mismatch", "the campaign belongs to another organization"),
    BATCH_MISMATCH: Rejection(
        "batch_mismatch", "the contact is already known in another batch of the campaign"
    ),
}
_OUTCOMES = {APPLIED: "applied", REPLAYED: "replayed", STALE: "stale"}


@dataclass(frozen=True, slots=True)
class _Item:
    record: Record
    event: Event


class BatchProcessor:
    """Validates, applies and dead-letters whole record batches."""

    def __init__(
        self,
        store: Store,
        send_dead_letter: SendDeadLetter,
        epoch_of: EpochOf,
        *,
        max_message_bytes: int = 64 * 1024,
    ) -> None:
        self.store = store
        self.send_dead_letter = send_dead_letter
        self.epoch_of = epoch_of
        self.max_message_bytes = max_message_bytes

    async def process(self, records: Iterable[Record]) -> Counter[str]:
        """Apply a batch; returns how many records ended in each outcome."""
        started = time.perf_counter()
        tally: Counter[str] = Counter()
        valid: list[tuple[str, int, int, Event]] = []
        rejected: list[tuple[Record, Rejection]] = []
        by_offset: dict[tuple[str, int, int], Record] = {}
        for record in records:
            outcome = parse(record.value, max_bytes=self.max_message_bytes)
            if isinstance(outcome, Rejection):
                rejected.append((record, outcome))
            else:
                valid.append((record.topic, record.partition, record.offset, outcome))
                by_offset[(record.topic, record.partition, record.offset)] = record
        slices = group(valid)
        epochs = [await self.epoch_of(part.topic, part.partition) for part in slices]
        results = await self.store.apply(list(zip(slices, epochs, strict=True)))
        owners: dict[str, str] = {}
        for part, codes in zip(slices, results, strict=True):
            for (offset, event), code in zip(part.items, codes, strict=True):
                if code in _LUA_REJECTIONS:
                    rejected.append(
                        (by_offset[(part.topic, part.partition, offset)], _LUA_REJECTIONS[code])
                    )
                    continue
                tally[_OUTCOMES[code]] += 1
                if code == APPLIED:
                    owners[event.campaign_id] = event.organization_id
        await self.store.register_campaigns(owners)
        await self._dead_letter(rejected)
        tally["dead_lettered"] += len(rejected)
        for name, count in tally.items():
            metrics.EVENTS.labels(name).inc(count)
        metrics.APPLY_SECONDS.observe(time.perf_counter() - started)
        return tally

    async def _dead_letter(self, rejected: Sequence[tuple[Record, Rejection]]) -> None:
        sends = []
        for record, rejection in rejected:
            source = Source(record.topic, record.partition, record.offset)
            value, headers = dead_letter(record.value, record.key, source, rejection)
            sends.append(self.send_dead_letter(record.key, value, headers))
            metrics.DEAD_LETTERS.labels(rejection.reason).inc()
        await asyncio.gather(*sends)
