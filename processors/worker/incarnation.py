"""Which incarnation of a topic partition the worker is reading.

A dev broker with memory storage restarts empty, at offset 0, so offsets alone cannot tell
a replay from new data. Each partition has an epoch in Redis, part of every fence value,
and a marker: the offset and fingerprint of the first record of the log. Whenever the
worker (re)gains a partition, or sees its position go back, it reads the first record
again; if the log is empty or starts with another record, the log was wiped or recreated
and a new epoch starts, so the old fences no longer skip anything. (Versions keep the
counters exact either way: the fence decides whether a re-read counts as a replay or is
re-checked event by event. Retention moving the log start also starts a new epoch; that
costs re-checks, not exactness.)
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Awaitable, Callable

from processors import metrics
from processors.store.client import Store
from processors.worker.pipeline import Record

log = logging.getLogger(__name__)

#: Reads the first record of (topic, partition); None when the log is empty.
Probe = Callable[[str, int], Awaitable[Record | None]]


def fingerprint(record: Record) -> str:
    """Identifies one record of one incarnation (producer timestamps differ across runs)."""
    digest = zlib.crc32(record.key or b"")
    digest = zlib.crc32(record.value or b"", digest)
    return f"{record.offset}:{digest:08x}:{getattr(record, 'timestamp', None) or 0}"


class Incarnations:
    """Epochs of the partitions this worker reads, checked on every (re)assignment."""

    def __init__(self, store: Store, probe: Probe) -> None:
        self.store = store
        self.probe = probe
        self._epochs: dict[tuple[str, int], int] = {}
        self._unmarked: set[tuple[str, int]] = set()
        self._marks: dict[tuple[str, int], dict[str, str]] = {}

    async def epoch(self, topic: str, partition: int) -> int:
        """The current epoch of a partition, detecting a wiped or recreated log."""
        tp = (topic, partition)
        known = self._epochs.get(tp)
        if known is not None:
            return known
        marker = await self.store.log_marker(topic, partition)
        epoch = int(marker.get("epoch", 0))
        first = await self.probe(topic, partition)
        seen = fingerprint(first) if first is not None else None
        if epoch == 0 or ("first" in marker and marker["first"] != seen):
            epoch = await self.store.new_epoch(topic, partition)
            metrics.EPOCHS.inc()
            log.info("%s[%d]: new log incarnation, epoch %d", topic, partition, epoch)
        if seen is None:
            self._unmarked.add(tp)
        elif marker.get("first") != seen:
            await self.store.set_log_markers({tp: {"first": seen}})
        self._epochs[tp] = epoch
        return epoch

    def note(self, record: Record) -> None:
        """A partition that was empty at the check gets its first record remembered."""
        tp = (record.topic, record.partition)
        if tp in self._unmarked and record.offset == 0:
            self._unmarked.discard(tp)
            self._marks[tp] = {"first": fingerprint(record)}

    async def flush(self) -> None:
        """Store the markers noted since the last flush."""
        marks, self._marks = self._marks, {}
        await self.store.set_log_markers(marks)

    def forget(self, tps: set[tuple[str, int]]) -> None:
        """Check these partitions again on their next batch."""
        for tp in tps:
            self._epochs.pop(tp, None)
            self._marks.pop(tp, None)
            self._unmarked.discard(tp)
