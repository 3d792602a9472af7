"""Sources of truth for reconciliation.

The default source is the event log itself: the three topics read from the beginning up to
the end offsets taken when the read starts. In production they are compacted and keyed by
entity id, so the latest event of every entity stays in the log. A database of record
(the dialer's own contacts and call-record store) can stand in by implementing `Source`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from processors.settings import Settings
from processors.worker.pipeline import Record


class Source(Protocol):
    """Where reconciliation reads the truth from."""

    ends: dict[str, int]
    """`topic:partition` -> end offset the read stops at (filled in by `read`)."""

    def read(
        self, progress: Callable[[int, int], None] | None = None
    ) -> AsyncIterator[list[Record]]:
        """Every record up to the ends, in offset order per partition, in batches."""
        ...


class KafkaLogSource:
    """The event log: source topics from the beginning to their current end."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ends: dict[str, int] = {}

    async def read(
        self, progress: Callable[[int, int], None] | None = None
    ) -> AsyncIterator[list[Record]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
        )
        await consumer.start()
        try:
            await consumer.topics()  # loads metadata
            tps = [
                TopicPartition(topic, partition)
                for topic in self.settings.source_topics
                for partition in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            consumer.assign(tps)
            # ListOffsets gives a lower bound only: Tansu 0.6 answers the base offset of the
            # last record batch + 1. The high watermark of the first fetch response of each
            # partition is exact, so that is where the read stops.
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            stop: dict[Any, int] = {}
            total = sum(max(ends[tp] - starts[tp], 0) for tp in tps)
            done = 0
            remaining = {tp for tp in tps if ends[tp] > starts[tp]}
            await consumer.seek_to_beginning(*remaining)
            while remaining:
                fetched: dict[Any, list[Any]] = await consumer.getmany(
                    *remaining, timeout_ms=1000, max_records=20_000
                )
                for tp in remaining:
                    highwater = consumer.highwater(tp)
                    if tp not in stop and highwater is not None:
                        stop[tp] = max(highwater, ends[tp])
                        total += stop[tp] - ends[tp]
                for tp, records in fetched.items():
                    kept = [r for r in records if r.offset < stop.get(tp, ends[tp])]
                    if kept:
                        done += len(kept)
                        yield kept
                for tp in list(remaining):
                    if tp in stop and await consumer.position(tp) >= stop[tp]:
                        remaining.discard(tp)
                if progress is not None:
                    progress(done, total)
            self.ends = {f"{tp.topic}:{tp.partition}": stop.get(tp, ends[tp]) for tp in tps}
        finally:
            await consumer.stop()
