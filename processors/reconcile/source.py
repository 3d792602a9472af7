"""Sources of truth for reconciliation.

The default source is the event log itself: the three topics read from the beginning up to
the end offsets taken when the read starts. In production they are compacted and keyed by
entity id, so the latest event of every entity stays in the log. A database of record
(the dialer's own contacts and call-record store) can stand in by implementing `Source`.

The log is read like the worker reads it (`processors.fetching`): every codec, committed
records only, up to the last stable offset -- an open transaction's records are not part
of the log yet. A batch that cannot be decoded fails the read (`UndecodableLog`): a
recount from a log with a hole in it would be wrong.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from processors import UndecodableLog, fetching
from processors.settings import Settings
from processors.worker.pipeline import Record

log = logging.getLogger(__name__)

#: Attempts at an undecodable batch before the read fails (the fetcher backs off between).
DECODE_ATTEMPTS = 3
#: How long a partition may wait for a transaction's outcome before the read ends there.
MARKER_WAIT_SECONDS = 30.0


class Source(Protocol):
    """Where reconciliation reads the truth from."""

    ends: dict[str, int]
    """`topic:partition` -> end offset the read stops at (filled in by `read`)."""

    def read(
        self, progress: Callable[[int, int], None] | None = None
    ) -> AsyncIterator[list[Record]]:
        """Every record up to the ends, in offset order per partition, in batches."""
        ...

    async def committed(self) -> dict[str, int]:
        """`topic:partition` -> the worker group's committed offset (the next one it reads):
        everything before it is applied. Empty when unknown."""
        ...


class KafkaLogSource:
    """The event log: source topics from the beginning to their current end."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ends: dict[str, int] = {}

    async def read(
        self, progress: Callable[[int, int], None] | None = None
    ) -> AsyncIterator[list[Record]]:
        fetching.install()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            isolation_level=fetching.ISOLATION_LEVEL,
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
            # last record batch + 1, and 0 for read_committed while a transaction is open.
            # The first fetch response of each partition is exact: the read stops at its
            # last stable offset (the high watermark when no transaction is open). Every
            # partition is fetched, and transaction markers are skipped, so the position
            # gets there.
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            stop: dict[Any, int] = {}
            total = sum(max(ends[tp] - starts[tp], 0) for tp in tps)
            done = 0
            remaining = set(tps)
            await consumer.seek_to_beginning(*remaining)
            while remaining:
                fetched: dict[Any, list[Any]] = await consumer.getmany(
                    *remaining, timeout_ms=1000, max_records=20_000
                )
                for tp in remaining:
                    highwater = consumer.highwater(tp)
                    if tp not in stop and highwater is not None:
                        stable = consumer.last_stable_offset(tp)
                        end = stable if stable is not None and stable >= 0 else highwater
                        stop[tp] = max(end, starts[tp])
                        total += stop[tp] - max(ends[tp], starts[tp])
                self._check_holds(consumer, remaining, stop)
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

    @staticmethod
    def _check_holds(consumer: AIOKafkaConsumer, remaining: set[Any], stop: dict[Any, int]) -> None:
        """Fail on a batch that stays undecodable; end a partition whose next records wait
        too long for their transaction's outcome where it is."""
        for tp, hold in fetching.holds(consumer).items():
            if tp not in remaining:
                continue
            if hold.undecodable:
                if hold.retries + 1 >= DECODE_ATTEMPTS:
                    raise UndecodableLog(
                        f"{tp.topic}[{tp.partition}]: the batch at offset {hold.offset} cannot "
                        f"be decoded: {hold.reason}"
                    )
            elif time.time() - hold.since > MARKER_WAIT_SECONDS:
                log.warning(
                    "%s[%d]: the transaction at offset %d is still open; reading up to it",
                    tp.topic, tp.partition, hold.offset,
                )  # fmt: skip
                stop[tp] = hold.offset

    async def committed(self) -> dict[str, int]:
        """The consumer group's committed offsets of the partitions read (no group join:
        a consumer that never subscribes only asks the coordinator)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=self.settings.consumer_group,
            enable_auto_commit=False,
        )
        offsets: dict[str, int] = {}
        try:
            await consumer.start()
            for name in self.ends:
                topic, _, partition = name.rpartition(":")
                offset = await consumer.committed(TopicPartition(topic, int(partition)))
                if offset is not None:
                    offsets[name] = offset
        except KafkaError as exc:  # only a hint: the fences still tell
            log.warning("reading the group's committed offsets failed: %s", exc)
        finally:
            await consumer.stop()
        return offsets
