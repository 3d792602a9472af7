"""Reading the topics as real producers write them: every consumer (the worker, the
reconciliation log source, the incarnation probe) reads through aiokafka's fetcher as
patched by `install`, in two places.

- **Transactions.** Tansu 0.6 answers every `read_committed` Fetch with an empty list of
  aborted transactions, so a stock client (aiokafka and librdkafka alike) hands out the
  records of aborted transactions. Here the fate of a transactional batch is read from the
  next control marker of its producer instead: a committed batch is returned, an aborted
  one skipped. Data below the last stable offset belongs to finished transactions, so the
  marker exists; when it is not in the fetched data yet (another transaction still open in
  between, or a transaction larger than one fetch) the partition stops before the batch
  and fetches again shortly. Positions never pass an undecided record, so offsets stay in
  order for the fences and the commits.
- **Undecodable batches.** A batch that cannot be decoded (a codec library missing, a bad
  CRC, corrupt compressed data) raises inside aiokafka's fetcher, which in faust ends the
  worker -- and the restart fetches the same batch. Here the partition stops at that
  batch, is paused and fetched again with backoff (1 s doubling to 30 s) while the other
  partitions keep flowing; `holds` tells the consumer's owner, which reports it. Once the
  batch decodes, the partition goes on by itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any
from weakref import WeakKeyDictionary

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer import fetcher
from aiokafka.record.control_record import ABORT_MARKER, ControlRecord

from processors import metrics

log = logging.getLogger(__name__)

#: The isolation level of every consumer of the source topics.
ISOLATION_LEVEL = "read_committed"

RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
#: How long a partition waits before fetching again for a transaction's marker.
MARKER_WAIT_SECONDS = 0.05
MARKER_WAIT_MAX_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Hold:
    """A partition stopped before `offset`: undecodable, or waiting for a marker."""

    topic: str
    partition: int
    offset: int
    reason: str
    undecodable: bool
    since: float  # wall clock (s) of the first failure at this offset
    retries: int = 0

    @property
    def retry_in(self) -> float:
        """Seconds until the partition is fetched again."""
        first, most = (
            (RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS)
            if self.undecodable
            else (MARKER_WAIT_SECONDS, MARKER_WAIT_MAX_SECONDS)
        )
        return float(min(first * 2.0 ** min(self.retries, 16), most))


# The holds of each consumer, keyed by its current assignment (a new one per rebalance).
_HOLDS: WeakKeyDictionary[Any, dict[TopicPartition, Hold]] = WeakKeyDictionary()


def holds(consumer: AIOKafkaConsumer) -> dict[TopicPartition, Hold]:
    """The partitions of `consumer`'s current assignment that are held (a snapshot)."""
    subscription = consumer._subscription.subscription
    assignment = subscription.assignment if subscription is not None else None
    if assignment is None:
        return {}
    return dict(_HOLDS.get(assignment, {}))


def install() -> None:
    """Patch aiokafka's fetcher for every consumer of this process (idempotent)."""
    if fetcher.PartitionRecords is not _PartitionRecords:
        fetcher.PartitionRecords = _PartitionRecords
        # `fetched_records` tests `type(result) is FetchResult` against the module global
        fetcher.FetchResult = _FetchResult


class Record(msgspec.Struct, frozen=True, gc=False):
    """A fetched record: the fields of aiokafka's `ConsumerRecord`, built in C.

    The stock dataclass costs about a microsecond a record to build (a tenth of the
    worker's time per event) and is tracked by the cyclic collector; nothing here holds a
    reference cycle, so this one is not.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    checksum: int | None
    serialized_key_size: int
    serialized_value_size: int
    headers: tuple[tuple[str, bytes], ...]


class _PartitionRecords(fetcher.PartitionRecords):  # type: ignore[misc]
    """One partition's fetched data; stops at an undecodable or undecided batch."""

    #: Where and why the iteration stopped early: (offset, reason, undecodable).
    stopped: tuple[int, str, bool] | None = None

    def _consumer_record(self, tp: TopicPartition, record: Any) -> Any:
        if self._key_deserializer or self._value_deserializer:
            return super()._consumer_record(tp, record)
        key, value = record.key, record.value
        return Record(
            tp.topic, tp.partition, record.offset, record.timestamp, record.timestamp_type,
            key, value, record.checksum, -1 if key is None else len(key),
            -1 if value is None else len(value), tuple(record.headers),
        )  # fmt: skip

    def _stop(self, reason: str, *, undecodable: bool) -> None:
        self.stopped = (self.next_fetch_offset, reason, undecodable)
        if undecodable:
            metrics.DECODE_FAILURES.labels(self._tp.topic).inc()

    def _unpack_records(self) -> Iterator[Any]:
        tp = self._tp
        batches, error = _batches(self._records, check_crcs=self._check_crcs)
        committed = self._isolation_level == fetcher.READ_COMMITTED
        fates = _fates(batches) if committed else {}
        for index, batch in enumerate(batches):
            if batch.is_control_batch:
                self.next_fetch_offset = batch.next_offset
                continue
            if committed and batch.is_transactional:
                fate = fates.get(index)
                if fate is None:
                    self._stop("waiting for the transaction's marker", undecodable=False)
                    return
                if isinstance(fate, str):
                    self._stop(fate, undecodable=True)
                    return
                if fate:  # aborted
                    count = batch.next_offset - max(batch.base_offset, self.next_fetch_offset)
                    metrics.ABORTED_RECORDS.labels(tp.topic).inc(max(count, 0))
                    self.next_fetch_offset = batch.next_offset
                    continue
            try:
                decoded = list(batch)  # decompresses: may fail as a whole
            except Exception as exc:
                self._stop(_describe(exc), undecodable=True)
                return
            for record in decoded:
                if record.offset < self.next_fetch_offset:
                    continue  # before the position (a batch fetched from its middle)
                consumer_record = self._consumer_record(tp, record)
                self.next_fetch_offset = record.offset + 1
                yield consumer_record
            self.next_fetch_offset = batch.next_offset
        if error is not None:
            self._stop(error, undecodable=True)


def _batches(records: Any, *, check_crcs: bool) -> tuple[list[Any], str | None]:
    """The record batches of a fetch response up to the first bad one, and what is wrong
    with that one."""
    batches: list[Any] = []
    try:
        while records.has_next():
            batch = records.next_batch()
            if check_crcs and not batch.validate_crc():  # before any iteration of it
                return batches, f"invalid CRC of the batch at offset {batch.base_offset}"
            batches.append(batch)
    except Exception as exc:
        return batches, _describe(exc)
    return batches, None


def _describe(exc: BaseException) -> str:
    text, name = str(exc), type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name


def _fates(batches: Sequence[Any]) -> dict[int, bool | str]:
    """Index of each transactional batch whose marker is in `batches` -> aborted, or the
    reason its marker could not be read."""
    fates: dict[int, bool | str] = {}
    waiting: dict[int, list[int]] = {}
    for index, batch in enumerate(batches):
        if batch.is_control_batch:
            mine = waiting.pop(batch.producer_id, None)
            if mine:
                outcome: bool | str
                try:
                    outcome = ControlRecord.parse(next(iter(batch)).key) == ABORT_MARKER
                except Exception as exc:
                    outcome = f"unreadable transaction marker: {_describe(exc)}"
                for i in mine:
                    fates[i] = outcome
        elif batch.is_transactional:
            waiting.setdefault(batch.producer_id, []).append(index)
    return fates


class _FetchResult(fetcher.FetchResult):  # type: ignore[misc]
    """A fetch result that pauses its partition when its records stopped early."""

    def getall(self, max_records: int | None = None) -> list[Any]:
        records = self._partition_records
        out: list[Any] = super().getall(max_records)
        if isinstance(records, _PartitionRecords) and self._partition_records is None:
            _settle(self._assignment, self._topic_partition, records)
        return out

    def getone(self) -> Any:
        records = self._partition_records
        message = super().getone()
        if message is None and isinstance(records, _PartitionRecords):
            _settle(self._assignment, self._topic_partition, records)
        return message


def _settle(assignment: Any, tp: TopicPartition, records: _PartitionRecords) -> None:
    """After a partition's records are used up: hold and pause it, or release its hold."""
    if not assignment.active or tp not in assignment.tps:
        return
    table = _HOLDS.setdefault(assignment, {})
    held = table.get(tp)
    if records.stopped is None:
        if held is not None and records.next_fetch_offset > held.offset:
            del table[tp]
            if held.undecodable:
                log.warning(
                    "%s[%d] decodes again at offset %d after %d retries",
                    tp.topic, tp.partition, held.offset, held.retries,
                )  # fmt: skip
        return
    offset, reason, undecodable = records.stopped
    if held is not None and (held.offset, held.undecodable) == (offset, undecodable):
        hold = replace(held, reason=reason, retries=held.retries + 1)
    else:
        hold = Hold(tp.topic, tp.partition, offset, reason, undecodable, time.time())
    table[tp] = hold
    if undecodable:
        log.error(
            "%s[%d] is stuck: the batch at offset %d cannot be decoded (%s); "
            "the other partitions go on, this one is fetched again in %.0f s",
            tp.topic, tp.partition, offset, reason, hold.retry_in,
        )  # fmt: skip
    state = assignment.state_value(tp)
    state.pause()
    asyncio.get_running_loop().call_later(hold.retry_in, _resume, assignment, tp)


def _resume(assignment: Any, tp: TopicPartition) -> None:
    if assignment.active and tp in assignment.tps:
        with suppress(Exception):
            assignment.state_value(tp).resume()
