"""The hot path: one fetched batch of records in, one script call per campaign slice out.

Free of faust: the worker's consumer hands whole record batches here, and tests drive it
directly. Every record ends as exactly one of applied, replayed, stale or dead-lettered --
or, with a null value (a compaction tombstone, not an event), as a skipped `tombstone`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from processors import metrics
from processors.domain.contract import APPLIED, REPLAYED, STALE, TENANT_MISMATCH, Rejection
from processors.domain.deadletter import Source, dead_letter
from processors.domain.events import Event, parse
from processors.store.client import Store
from processors.store.slices import Slice, encode, group


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
}
_OUTCOMES = {APPLIED: "applied", REPLAYED: "replayed", STALE: "stale"}
#: Records prepared between two turns of the event loop.
YIELD_EVERY = 1024


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated, grouped and encoded batch, ready to apply."""

    records: Sequence[Record]
    slices: list[Slice]
    calls: list[tuple[list[str], list[str]]]
    rejected: list[tuple[Record, Rejection]]
    seconds: float
    tombstones: int = 0


class BatchProcessor:
    """Validates, applies and dead-letters whole record batches."""

    def __init__(
        self,
        store: Store,
        send_dead_letter: SendDeadLetter,
        epoch_of: EpochOf,
        *,
        max_message_bytes: int = 64 * 1024,
        failpoint: Callable[[str], None] = lambda name: None,
    ) -> None:
        self.store = store
        self.send_dead_letter = send_dead_letter
        self.epoch_of = epoch_of
        self.max_message_bytes = max_message_bytes
        self.failpoint = failpoint

    async def process(self, records: Sequence[Record]) -> Counter[str]:
        """Validate and apply a batch; how many records ended in each outcome."""
        return await self.apply(await self.prepare(records))

    async def prepare(self, records: Sequence[Record]) -> Prepared:
        """The CPU half: validate, group by campaign, encode the script calls."""
        started = time.perf_counter()
        valid: list[tuple[str, int, int, Event]] = []
        rejected: list[tuple[Record, Rejection]] = []
        tombstones = 0
        max_bytes = self.max_message_bytes
        for index, record in enumerate(records):
            if not index % YIELD_EVERY:
                # Let the batch before this one reach Redis: its apply task was only
                # scheduled, and a loop that never yields would send it after this one is
                # prepared -- Redis and this CPU half would take turns instead of overlapping.
                await asyncio.sleep(0)
            if record.value is None:  # a tombstone: no event, nothing to dead-letter
                tombstones += 1
                metrics.TOMBSTONES.labels(record.topic).inc()
                continue
            outcome = parse(record.value, max_bytes=max_bytes)
            if isinstance(outcome, Rejection):
                rejected.append((record, outcome))
            else:
                valid.append((record.topic, record.partition, record.offset, outcome))
        slices = group(valid)
        epochs = {
            (topic, partition): await self.epoch_of(topic, partition)
            for topic, partition in {(t, p) for t, p, _, _ in valid}
        }
        calls = [encode(part, epochs) for part in slices]
        seconds = time.perf_counter() - started
        return Prepared(records, slices, calls, rejected, seconds, tombstones)

    async def apply(self, prepared: Prepared) -> Counter[str]:
        """The I/O half: one script call per slice, dead letters, tallies."""
        started = time.perf_counter()
        tally: Counter[str] = Counter()
        rejected = list(prepared.rejected)
        results = await self.store.apply_calls(prepared.calls)
        self.failpoint("after_script")
        owners: dict[str, str] = {}
        changed: dict[str, str | None] = {}
        late: list[tuple[tuple[str, int, int], Rejection]] = []
        for part, codes in zip(prepared.slices, results, strict=True):
            # A replay means an earlier run of this slice may have died before its side
            # effects (registration, announce, dead letters): they are repeated, and the
            # script gives a replayed foreign event its tenant verdict again.
            changed_here = APPLIED in codes or REPLAYED in codes
            if len(codes) != len(part.items):
                raise ValueError(f"{len(codes)} outcomes for {len(part.items)} events")
            counted = 0
            for code, name in _OUTCOMES.items():
                count = codes.count(code)
                counted += count
                if count:
                    tally[name] += count
            if counted + codes.count(TENANT_MISMATCH) != len(codes):
                raise ValueError(f"unknown outcome codes in {sorted(set(codes))}")
            if TENANT_MISMATCH not in codes:
                owner = part.items[0][3].organization_id  # every event is the owner's
            else:
                owner = None
                for (topic, partition, offset, event), code in zip(part.items, codes, strict=True):
                    if code in _LUA_REJECTIONS:
                        late.append(((topic, partition, offset), _LUA_REJECTIONS[code]))
                    elif owner is None:
                        owner = event.organization_id
            if owner is not None:
                # every time, not once per process: a Redis emptied under a running worker
                # (then rebuilt by a reconcile) lists the campaign again at its next event
                owners[part.campaign_id] = owner
            if changed_here:
                changed[part.campaign_id] = owner
        if late:
            by_offset = {(r.topic, r.partition, r.offset): r for r in prepared.records}
            rejected += [(by_offset[where], rejection) for where, rejection in late]
        if owners or changed:
            orgs = {campaign: org for campaign, org in changed.items() if org is not None}
            await self.store.announce(changed, orgs, register=owners)
        await self._dead_letter(rejected)
        tally["dead_lettered"] += len(rejected)
        if prepared.tombstones:
            tally["tombstone"] += prepared.tombstones
        for name, count in tally.items():
            metrics.EVENTS.labels(name).inc(count)
        metrics.APPLY_SECONDS.observe(prepared.seconds + time.perf_counter() - started)
        return tally

    async def _dead_letter(self, rejected: Sequence[tuple[Record, Rejection]]) -> None:
        sends = []
        for record, rejection in rejected:
            source = Source(record.topic, record.partition, record.offset)
            value, headers = dead_letter(record.value, record.key, source, rejection)
            sends.append(self.send_dead_letter(record.key, value, headers))
            metrics.DEAD_LETTERS.labels(rejection.reason).inc()
        await asyncio.gather(*sends)
