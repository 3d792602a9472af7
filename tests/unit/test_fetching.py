"""Reading fetched record batches as real producers write them (`processors.fetching`):
every codec, aborted transactions skipped by their markers, undecodable batches held."""

from __future__ import annotations

import asyncio
import struct
from types import SimpleNamespace
from typing import Any

import aiokafka.codec
import pytest
from aiokafka import TopicPartition
from aiokafka.consumer import fetcher
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c

from processors import fetching, metrics

TP = TopicPartition("dialer.contacts", 0)
CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
_CRC_AT, _ATTRIBUTES_AT, _CONTROL = 17, 21, 0x20


def batch(
    base: int,
    values: list[bytes | None],
    *,
    producer: int = -1,
    transactional: bool = False,
    codec: str = "none",
) -> bytes:
    """A v2 record batch as the broker stores it, starting at `base`."""
    builder = DefaultRecordBatchBuilder(
        2, CODECS[codec], int(transactional), producer, 0 if producer >= 0 else -1, -1, 1 << 20
    )
    for delta, value in enumerate(values):
        builder.append(delta, timestamp=1_700_000_000_000, key=None, value=value, headers=[])
    raw = bytearray(builder.build())
    struct.pack_into(">q", raw, 0, base)  # the base offset is outside the CRC
    return bytes(raw)


def marker(base: int, producer: int, *, commit: bool) -> bytes:
    """A transaction's control batch (COMMIT or ABORT) as the broker writes it."""
    key = struct.pack(">hh", 0, 1 if commit else 0)
    builder = DefaultRecordBatchBuilder(2, 0, 1, producer, 0, -1, 1 << 20)
    builder.append(0, timestamp=1_700_000_000_000, key=key, value=b"\0\0\0\0\0\0", headers=[])
    raw = bytearray(builder.build())
    struct.pack_into(">q", raw, 0, base)
    attributes = struct.unpack_from(">h", raw, _ATTRIBUTES_AT)[0] | _CONTROL
    struct.pack_into(">h", raw, _ATTRIBUTES_AT, attributes)
    struct.pack_into(">I", raw, _CRC_AT, calc_crc32c(bytes(raw[_ATTRIBUTES_AT:])))
    return bytes(raw)


def partition_records(data: bytes, fetch_offset: int = 0) -> Any:
    return fetching._PartitionRecords(
        TP, MemoryRecords(data), [], fetch_offset, None, None, True, fetcher.READ_COMMITTED
    )


def values(records: Any) -> list[bytes | None]:
    return [record.value for record in records]


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_every_codec_is_decoded(codec: str) -> None:
    """gzip, snappy, lz4, zstd and uncompressed batches all give their records back."""
    data = batch(0, [b"a", b"b"], codec=codec) + batch(2, [b"c"], codec=codec)
    records = partition_records(data)
    assert values(records) == [b"a", b"b", b"c"]
    assert records.stopped is None and records.next_fetch_offset == 3


def test_aborted_transactions_are_skipped_by_their_markers() -> None:
    """Tansu lists no aborted transactions in its fetch responses: the markers decide.
    Two producers interleave; plain records between them always count."""
    before = metrics.ABORTED_RECORDS.labels(TP.topic)._value.get()
    data = (
        batch(0, [b"a1", b"a2"], producer=7, transactional=True, codec="zstd")
        + batch(2, [b"b1"], producer=8, transactional=True)
        + batch(3, [b"plain"])
        + marker(4, 7, commit=False)
        + batch(5, [b"b2"], producer=8, transactional=True, codec="lz4")
        + marker(6, 8, commit=True)
        + batch(7, [b"a3"], producer=7, transactional=True)
        + marker(8, 7, commit=True)
    )
    records = partition_records(data)
    assert values(records) == [b"b1", b"plain", b"b2", b"a3"]
    assert records.stopped is None and records.next_fetch_offset == 9
    assert metrics.ABORTED_RECORDS.labels(TP.topic)._value.get() - before == 2


def test_a_transaction_without_its_marker_yet_stops_the_partition_before_it() -> None:
    """Its outcome is unknown: the records before it are returned, the position stays
    before it, and the partition waits (not an error)."""
    data = batch(0, [b"x"]) + batch(1, [b"t1"], producer=3, transactional=True) + batch(2, [b"y"])
    records = partition_records(data)
    assert values(records) == [b"x"]
    assert records.next_fetch_offset == 1
    assert records.stopped == (1, "waiting for the transaction's marker", False)


def test_an_undecodable_batch_stops_the_partition_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A codec library missing: the batches before it are returned, then the partition
    stops at it with the reason -- nothing is raised into the consumer."""
    data = batch(0, [b"a"], codec="gzip") + batch(1, [b"b"], codec="snappy") + batch(2, [b"c"])
    monkeypatch.setattr(aiokafka.codec, "has_snappy", lambda: False)
    records = partition_records(data)
    assert values(records) == [b"a"]
    assert records.next_fetch_offset == 1
    offset, reason, undecodable = records.stopped
    assert (offset, undecodable) == (1, True) and "snappy" in reason


def test_a_corrupt_batch_stops_the_partition_before_it() -> None:
    """A CRC mismatch is held like a missing codec."""
    bad = bytearray(batch(1, [b"bbbb"]))
    bad[-2] ^= 0xFF
    records = partition_records(batch(0, [b"a"]) + bytes(bad))
    assert values(records) == [b"a"]
    assert records.stopped is not None and records.stopped[0] == 1 and records.stopped[2]
    assert "CRC" in records.stopped[1]


def test_tombstones_and_null_keys_pass_through() -> None:
    """A null value is a record like any other here (the pipeline skips it)."""
    assert values(partition_records(batch(0, [None, b"v"], codec="lz4"))) == [None, b"v"]


async def test_a_held_partition_is_paused_retried_and_released(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fetch result pauses a partition that stopped at an undecodable batch, resumes it
    after the backoff, counts the retries, and forgets the hold once it decodes."""
    monkeypatch.setattr(fetching, "RETRY_FIRST_SECONDS", 0.05)
    subscription = SubscriptionState()
    subscription.assign_from_user({TP})
    assignment = subscription.subscription.assignment
    state = assignment.state_value(TP)
    state.seek(0)
    consumer: Any = SimpleNamespace(_subscription=subscription)
    data = batch(0, [b"a"], codec="snappy")

    def fetch() -> list[Any]:
        result = fetching._FetchResult(
            TP, assignment=assignment, partition_records=partition_records(data), backoff=0
        )
        return list(result.getall())

    monkeypatch.setattr(aiokafka.codec, "has_snappy", lambda: False)
    assert fetch() == []
    hold = fetching.holds(consumer)[TP]
    assert (hold.offset, hold.undecodable, hold.retries) == (0, True, 0)
    assert state.paused

    async def resumed() -> None:
        while state.paused:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(resumed(), timeout=5)
    assert fetch() == []
    assert fetching.holds(consumer)[TP].retries == 1
    assert fetching.holds(consumer)[TP].since == hold.since
    await asyncio.wait_for(resumed(), timeout=5)

    monkeypatch.setattr(aiokafka.codec, "has_snappy", lambda: True)
    assert [r.value for r in fetch()] == [b"a"]
    assert fetching.holds(consumer) == {}
    assert not state.paused and state.position == 1


def test_install_is_idempotent() -> None:
    """Installing twice keeps one patch."""
    fetching.install()
    fetching.install()
    assert fetcher.PartitionRecords is fetching._PartitionRecords
    assert fetcher.FetchResult is fetching._FetchResult


async def test_the_worker_consumer_reads_committed_records() -> None:
    """faust reads uncommitted outside its own transactions; the worker's consumer thread
    sets read_committed on the consumer faust builds, which aiokafka hands to its Fetcher
    when it starts -- and its end of a partition is the last stable offset."""
    import inspect
    from unittest import mock

    from aiokafka import AIOKafkaConsumer

    from processors.settings import Settings
    from processors.worker.app import create_app

    thread = create_app(Settings()).consumer._thread
    consumer = thread._create_consumer(asyncio.get_running_loop())
    try:
        assert consumer._isolation_level == fetching.ISOLATION_LEVEL == "read_committed"
        assert "isolation_level=self._isolation_level" in inspect.getsource(AIOKafkaConsumer.start)
        with mock.patch.object(thread, "_consumer", consumer):
            with mock.patch.object(consumer, "last_stable_offset", return_value=7):
                assert thread.highwater(TP) == 7
            with (
                mock.patch.object(consumer, "last_stable_offset", return_value=-1),
                mock.patch.object(consumer, "highwater", return_value=9),
            ):
                assert thread.highwater(TP) == 9
    finally:
        await consumer.stop()
