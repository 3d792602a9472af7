"""Which incarnation of a topic partition the worker is reading.

A dev broker with memory storage restarts empty, at offset 0, so offsets alone cannot tell
a replay from new data. Each partition has an epoch in Redis, part of every fence value,
and a marker: the last offset applied and a fingerprint of the record there. On first use
after an assignment the worker reads the record at that offset again; if the log ends
before it or holds another record, the log was wiped or recreated and a new epoch starts,
so old fences no longer skip anything. (Versions keep the counters exact either way: the
fence decides whether a re-read is counted as a replay or re-checked event by event.)
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable

from processors import metrics
from processors.pipeline import Record
from processors.store import Store

#: Reads the record at (topic, partition, offset); None when the log ends before it.
Probe = Callable[[str, int, int], Awaitable[Record | None]]


def fingerprint(record: Record, timestamp: int | None) -> str:
    """Identifies one record of one incarnation (producer timestamps differ across runs)."""
    digest = zlib.crc32(record.key or b"")
    digest = zlib.crc32(record.value or b"", digest)
    return f"{digest:08x}:{timestamp or 0}"


class Incarnations:
    """Epochs of the partitions this worker reads, checked once per assignment."""

    def __init__(self, store: Store, probe: Probe) -> None:
        self.store = store
        self.probe = probe
        self._epochs: dict[tuple[str, int], int] = {}
        self._marks: dict[tuple[str, int], dict[str, str]] = {}

    async def epoch(self, topic: str, partition: int) -> int:
        """The current epoch of a partition, detecting a regressed log on first use."""
        tp = (topic, partition)
        known = self._epochs.get(tp)
        if known is not None:
            return known
        marker = await self.store.log_marker(topic, partition)
        epoch = int(marker.get("epoch", 0))
        if epoch == 0 or not await self._same_log(topic, partition, marker):
            epoch = await self.store.new_epoch(topic, partition)
            metrics.EPOCHS.inc()
        self._epochs[tp] = epoch
        return epoch

    async def _same_log(self, topic: str, partition: int, marker: dict[str, str]) -> bool:
        if "offset" not in marker:
            return True
        record = await self.probe(topic, partition, int(marker["offset"]))
        if record is None or record.offset != int(marker["offset"]):
            # The log ends before the marker, or (compaction) no longer holds that record:
            # when in doubt start a new epoch -- versions keep the counters exact anyway.
            return False
        return fingerprint(record, getattr(record, "timestamp", None)) == marker["fingerprint"]

    def note(self, record: Record) -> None:
        """Remember the last record applied from a partition (flushed by `flush`)."""
        self._marks[(record.topic, record.partition)] = {
            "offset": str(record.offset),
            "fingerprint": fingerprint(record, getattr(record, "timestamp", None)),
        }

    async def flush(self) -> None:
        """Store the markers noted since the last flush."""
        marks, self._marks = self._marks, {}
        await self.store.set_log_markers(marks)

    def forget(self, tps: set[tuple[str, int]]) -> None:
        """Partitions revoked: check them again when they come back."""
        for tp in tps:
            self._epochs.pop(tp, None)
            self._marks.pop(tp, None)
