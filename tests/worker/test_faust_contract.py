"""Contract tests of the worker's faust integration (`processors/worker/consumer.py`, the seam).

Each test drives faust's own consumer code (`commit`, `force_commit`, `_commit_tps`,
`_commit_offsets`, `on_partitions_revoked`) with only the broker round trip replaced, so a
faust upgrade that stops asking the hooks the batch consumer answers fails here. The same
behaviours against a real broker: `tests/faults/test_commits.py`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from processors.settings import Settings
from processors.worker.app import create_app
from processors.worker.consumer import _InFlight

TP0 = TP("dialer.contacts", 0)
TP1 = TP("dialer.contacts", 1)


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int


class FakeStore:
    def __init__(self) -> None:
        self.lag: dict[str, int] = {}
        self.dropping = asyncio.Event()

    async def set_lag(self, lag: dict[str, int]) -> None:
        self.lag.update(lag)

    async def drop_lag(self, fields: list[str]) -> None:
        self.dropping.set()
        await asyncio.sleep(0.005)  # one Redis round trip
        for field in fields:
            self.lag.pop(field, None)

    async def drop_stuck(self, fields: Any) -> None:
        list(fields)

    async def set_stuck(self, *args: Any) -> None:
        return None


class FakeIncarnations:
    def note(self, record: Any) -> None:
        return None

    async def flush(self) -> None:
        return None

    def forget(self, partitions: Any) -> None:
        return None


@pytest.fixture
async def consumer() -> Any:
    """The worker app's real BatchConsumer (never started): the broker's OffsetCommit is
    recorded instead of sent, Redis is a fake."""
    app = create_app(Settings())
    await app.store.close()
    app.store = FakeStore()  # type: ignore[assignment]
    app.incarnations = FakeIncarnations()  # type: ignore[assignment]
    c = app.consumer
    c.committed = {}

    async def commit(offsets: dict[TP, int]) -> bool:
        await asyncio.sleep(0.02)  # the OffsetCommit round trip
        c.committed.update(offsets)
        return True

    c._active_partitions = {TP0, TP1}
    c.highwater = lambda tp: 100
    with (
        mock.patch.object(c, "_commit", commit),
        mock.patch.object(c, "assignment", lambda: {TP0, TP1}),  # the group's assignment
        mock.patch.object(type(app), "producer", mock.Mock(flush=mock.AsyncMock())),
    ):
        yield c


async def test_the_commit_loop_commits_the_processed_offsets(consumer: Any) -> None:
    """faust's `commit()` (what its interval loop calls) commits `_processed`."""
    consumer._processed = {TP0: 10, TP1: 7}
    assert await consumer.commit()
    assert consumer.committed == {TP0: 10, TP1: 7}
    consumer._processed[TP0] = 12
    await consumer.commit()
    assert consumer.committed == {TP0: 12, TP1: 7}


async def test_stop_commits_what_was_marked_after_a_running_periodic_commit(
    consumer: Any,
) -> None:
    """A periodic commit in progress read the offsets before the last batch was marked:
    stop still commits the final offsets."""
    consumer._processed = {TP0: 10}
    release = asyncio.Event()
    task = asyncio.ensure_future(asyncio.sleep(0))
    await task
    consumer._in_flight = _InFlight(task, {TP0: [Rec(TP0.topic, 0, 10), Rec(TP0.topic, 0, 19)]})
    periodic = asyncio.ensure_future(consumer.commit())
    await asyncio.sleep(0)  # the periodic commit took its snapshot: {TP0: 10}
    release.set()
    with mock.patch.object(faust_aiokafka.Consumer, "on_stop", mock.AsyncMock()):
        await consumer.on_stop()
    await periodic
    assert consumer.committed[TP0] == 20, consumer.committed


async def test_revocation_finishes_the_batch_in_flight_and_commits_it(consumer: Any) -> None:
    """Revoked partitions are committed at what was applied, the batch in flight included,
    and forgotten; a batch marked while the revocation awaits Redis cannot bring them back."""
    consumer._processed = {TP0: 10, TP1: 5}
    applying = asyncio.ensure_future(asyncio.sleep(0.03))
    consumer._in_flight = _InFlight(applying, {TP0: [Rec(TP0.topic, 0, 10), Rec(TP0.topic, 0, 29)]})
    store = consumer.app.store

    async def drain_loop_step() -> None:
        # the drain loop settles another batch of TP0 while drop_lag awaits Redis
        await store.dropping.wait()
        late = asyncio.ensure_future(asyncio.sleep(0))
        consumer._lag_reported = 0.0
        await consumer._settle(_InFlight(late, {TP0: [Rec(TP0.topic, 0, 30)]}))

    async def faust_revoke(self: Any, revoked: set[TP]) -> None:
        self._active_partitions.difference_update(revoked)

    with mock.patch.object(faust_aiokafka.Consumer, "on_partitions_revoked", faust_revoke):
        await asyncio.gather(consumer.on_partitions_revoked({TP0}), drain_loop_step())
    assert consumer.committed == {TP0: 30}
    assert TP0 not in consumer._processed and consumer._processed == {TP1: 5}
    assert "dialer.contacts:0" not in consumer._lag
    assert "dialer.contacts:0" not in store.lag


async def test_a_cancelled_waiter_does_not_abort_the_apply(consumer: Any) -> None:
    """The Fetcher's stop cancels the drain loop while it waits for an apply: the apply
    runs to its end and is marked, so the final commit includes it."""
    gate = asyncio.Event()

    async def apply() -> None:
        await gate.wait()

    in_flight = _InFlight(
        asyncio.ensure_future(apply()), {TP1: [Rec(TP1.topic, 1, 3), Rec(TP1.topic, 1, 8)]}
    )
    consumer._in_flight = in_flight
    waiter = asyncio.ensure_future(consumer._settle(in_flight))
    await asyncio.sleep(0)
    waiter.cancel()
    gate.set()
    await consumer._finish_in_flight(timeout=5)
    assert not in_flight.task.cancelled()
    assert consumer._processed[TP1] == 9


async def test_a_stop_marks_and_commits_the_batch_in_flight(consumer: Any) -> None:
    """faust pauses every partition before the consumer stops: the batch in flight is
    still marked and committed (a graceful restart re-reads nothing)."""
    gate = asyncio.Event()

    async def apply() -> None:
        await gate.wait()

    consumer._in_flight = _InFlight(
        asyncio.ensure_future(apply()), {TP0: [Rec(TP0.topic, 0, 0), Rec(TP0.topic, 0, 2669)]}
    )
    consumer.pause_partitions({TP0, TP1})  # what faust's App._stop_consumer does first
    gate.set()
    with mock.patch.object(faust_aiokafka.Consumer, "on_stop", mock.AsyncMock()):
        await consumer.on_stop()
    assert consumer.committed == {TP0: 2670}


async def test_a_member_the_group_forgot_commits_nothing(consumer: Any) -> None:
    """After its session expired (a zombie, a wiped broker) the member must not commit:
    the partitions may be another member's, or the log a new one."""
    consumer._processed = {TP0: 10}
    forgotten = mock.Mock(_coordinator=mock.Mock(generation=-1, member_id=""))
    with mock.patch.object(consumer._thread, "_consumer", forgotten, create=True):
        await consumer.commit()
        await consumer._commit_latest()
    assert consumer.committed == {}
    member = mock.Mock(_coordinator=mock.Mock(generation=3, member_id="m-1"))
    with mock.patch.object(consumer._thread, "_consumer", member, create=True):
        await consumer.commit()
    assert consumer.committed == {TP0: 10}


async def test_transaction_markers_after_the_last_record_are_processed_too(
    consumer: Any,
) -> None:
    """A fetch that skipped a commit marker after the last record moved the position past
    it: the partition is processed up to there (commits and lag reach the log end), also
    when the marker came in a fetch of its own."""
    done = asyncio.ensure_future(asyncio.sleep(0))
    batch = {TP0: [Rec(TP0.topic, 0, 0), Rec(TP0.topic, 0, 19)]}
    await consumer._settle(_InFlight(done, batch, {TP0: 21, TP1: 4}))
    assert consumer._processed == {TP0: 21}  # 20 records, then the marker at 20
    consumer._processed[TP1] = 3
    consumer._skip_to({TP0: 21, TP1: 4})  # idle: TP1's marker arrived on its own
    assert consumer._processed == {TP0: 21, TP1: 4}
