"""The seam with faust: the worker's consumer, the one module that relies on faust's
internals (faust-streaming 0.15.3, pinned). faust's stock consumer turns every
record into a message, a task and a stream step (~200 us each); here `_drain_messages`
hands each `getmany` result to the pipeline and, once its scripts and dead letters are
done, marks the partitions' next offsets as processed. What faust relies on, each pinned
by a contract test in `tests/worker/test_faust_contract.py`:

- its commit loop (every `broker_commit_interval`) and its stop path commit the offsets
  `_new_offset` answers for the partitions `_filter_tps_with_pending_acks` yields -- faust
  fills those from per-message acks, which the batch path never makes, so both are
  answered from `_processed` here;
- `on_partitions_revoked` runs before the partitions go to another member: the batch in
  flight is finished and the revoked partitions' offsets committed there, so the next
  owner starts where this one stopped;
- the Fetcher's stop cancels `_drain_messages`: the apply in flight is shielded from that
  cancel, finished and marked, and the final commit then includes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from processors import fetching, metrics
from processors.worker.pipeline import Prepared

if TYPE_CHECKING:
    from processors.worker.app import DialerApp

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's aiokafka consumer thread with a short fetch wait, reading committed records.

    faust fixes `fetch_max_wait_ms` at 1500. A broker that holds an empty fetch for the
    whole wait instead of answering when data arrives (Tansu 0.6 does) then delays every
    event by up to 1.5 s; the wait is a setting here (`DIALER_STATS_FETCH_MAX_WAIT_MS`).
    faust reads `read_committed` only inside its own transactions; records of aborted
    transactions must never count, so the worker always does (see `processors.fetching`).
    """

    def _create_consumer(self, loop: asyncio.AbstractEventLoop) -> Any:
        consumer = super()._create_consumer(loop)
        app = cast("DialerApp", self.app)
        consumer._fetch_max_wait_ms = app.fetch_max_wait_ms
        consumer._isolation_level = fetching.ISOLATION_LEVEL  # read when the fetcher starts
        return consumer

    #: Every assigned partition's position right after the last fetch returned: past its
    #: last returned record and past any transaction markers or aborted batches after it.
    positions: Mapping[TP, int] = {}

    async def _fetch_records(self, consumer: Any, *args: Any, **kwargs: Any) -> Any:
        records = await super()._fetch_records(consumer, *args, **kwargs)
        self.positions = _positions(consumer)
        return records

    def highwater(self, tp: TP) -> int:
        """The end a committed reader can reach: the last stable offset."""
        consumer = self._ensure_consumer()
        stable = consumer.last_stable_offset(tp)
        if stable is not None and stable >= 0:
            return int(stable)
        return int(consumer.highwater(tp) or 0)


def _positions(consumer: Any) -> dict[TP, int]:
    assignment = consumer._subscription.subscription
    assignment = assignment.assignment if assignment is not None else None
    if assignment is None:
        return {}
    out: dict[TP, int] = {}
    for tp in assignment.tps:
        state = assignment.state_value(tp)
        if state.has_valid_position:
            out[TP(tp.topic, tp.partition)] = state.position
    return out


class BatchConsumer(faust_aiokafka.Consumer):
    """A faust consumer that processes whole fetched batches instead of single messages."""

    _processed: dict[TP, int]

    def _new_consumer_thread(self) -> Any:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _reset_state(self) -> None:
        super()._reset_state()
        self._processed = {}
        self._revoking: set[TP] = set()
        self._handed_over: set[TP] = set()
        self._in_flight: _InFlight | None = None
        self._settling = asyncio.Lock()
        self._lag: dict[str, int] = {}
        self._lag_reported = 0.0
        self._stuck: dict[TP, fetching.Hold] = {}
        self._holds_reported = 0.0

    @property
    def _dialer(self) -> DialerApp:
        return cast("DialerApp", self.app)

    def _new_offset(self, tp: TP) -> int | None:
        return self._processed.get(tp)

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        # faust commits the partitions this yields, at `_new_offset`
        return (
            tp
            for tp in list(self._processed)
            if topics is None or tp in topics or tp.topic in topics
        )

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        # From here no new batch of these partitions starts (the drain loop drops them; the
        # reassignment seeks to the committed offsets), so nothing marks them after the
        # commit below and nothing reports their lag again.
        self._revoking |= revoked
        try:
            await self._finish_in_flight(timeout=self._dialer.conf.broker_session_timeout / 2)
            await self._commit_latest(revoked)
            self._handed_over |= revoked  # a mark from now on would outlive the commit
            for tp in revoked:
                self._processed.pop(tp, None)
            fields = [f"{tp.topic}:{tp.partition}" for tp in revoked]
            for field in fields:
                self._lag.pop(field, None)
            with suppress(Exception):  # only informative (/readyz)
                await self._dialer.store.drop_lag(fields)
            await self._forget_stuck({tp for tp in self._stuck if tp in revoked})
            self._dialer.incarnations.forget({(tp.topic, tp.partition) for tp in revoked})
            await super().on_partitions_revoked(revoked)
        finally:
            self._revoking -= revoked
            self._handed_over -= revoked

    async def on_stop(self) -> None:
        await self._finish_in_flight(timeout=10.0)
        await self._commit_latest()
        await super().on_stop()

    async def _commit_offsets(
        self, offsets: Mapping[TP, int], start_new_transaction: bool = True
    ) -> bool:
        # Every commit (faust's loop, revocation, stop) passes here. A member the group no
        # longer knows (its session expired: a zombie, or a wiped broker) must not commit:
        # the partitions may be someone else's, or the log another one, where an offset
        # from before would skip records.
        if not self._in_group():
            log.info("not a member of the group now: commit of %d partitions skipped", len(offsets))
            return False
        return bool(await super()._commit_offsets(offsets, start_new_transaction))

    def _in_group(self) -> bool:
        consumer = getattr(self._thread, "_consumer", None)  # None: not started
        coordinator = getattr(consumer, "_coordinator", None)
        return coordinator is None or (coordinator.generation >= 0 and bool(coordinator.member_id))

    async def _commit_latest(self, tps: set[TP] | None = None) -> None:
        """Commit the processed offsets now (revocation, stop).

        faust's `commit()` returns without committing while its periodic commit runs, and
        that one may have read the offsets before the last batch was marked: wait for it,
        then commit what is marked now.
        """
        with suppress(Exception):
            await self.maybe_wait_for_commit_to_finish()
        offsets = {
            tp: offset
            for tp, offset in self._processed.items()
            if (tps is None or tp in tps) and self._should_commit(tp, offset)
        }
        if not offsets:
            return
        try:
            await self._commit_offsets(offsets)
        except Exception:
            # the next owner re-reads from the last commit; the fences make that a no-op
            log.exception("committing %s failed", sorted(offsets))

    async def _finish_in_flight(self, timeout: float) -> None:
        """Let the batch being applied finish and mark it (revocation, stop). One stuck
        behind a Redis outage is given up after `timeout`: unmarked, its records are read
        again by the next owner, and its fences make that exact."""
        in_flight = self._in_flight
        if in_flight is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._settle(in_flight)), timeout)
        except TimeoutError:
            log.warning("the batch in flight did not finish within %.0f s; left unmarked", timeout)
            in_flight.task.cancel()
        except Exception:
            pass  # a failed batch stays unmarked: read again

    async def _drain_messages(self, fetcher: Any) -> None:
        """Fetch, prepare and apply in a pipeline: while Redis applies batch k, batch k+1 is
        fetched (in the consumer thread) and validated and encoded here."""
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        fetch = self._fetch()
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                records = await fetch
                fetched_to = self._fetched_to()  # before the next fetch moves them on
                fetch = self._fetch()
                await self._report_holds()
                if not records or self.should_stop:
                    await self._settle(self._in_flight)
                    if not self.should_stop:
                        self._skip_to(fetched_to)
                    await self._report_lag()
                    continue
                if not self.flow_active:
                    # rebalancing: drop what was fetched; the seek re-reads it if it is ours
                    await self._settle(self._in_flight)
                    await self.perform_seek()
                    continue
                # Keep what still belongs to us even if a rebalance happened meanwhile
                # (dropping it would skip it: the position has moved past it); what moved
                # to another worker is read there from the committed offsets.
                current = self._get_active_partitions()
                batch = {tp: recs for tp, recs in records.items() if recs and tp in current}
                if not batch:
                    continue
                self._check_rewind(batch)
                prepare = partial(
                    self._dialer.processor.prepare,
                    [record for recs in batch.values() for record in recs],
                )
                prepared = await self._retrying("preparing a batch", prepare)
                await self._settle(self._in_flight)
                if self.should_stop or fetcher_stopped():
                    break  # not started, so not marked: the successor reads it
                if self._revoking & batch.keys():
                    continue  # being revoked: re-read from the commit after reassignment
                task = asyncio.ensure_future(self._apply(prepared))
                ends = {tp: fetched_to[tp] for tp in batch if tp in fetched_to}
                self._in_flight = _InFlight(task, batch, ends)
        finally:
            fetch.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await fetch
            # Finish the batch being applied and mark it, so the final commit has it. The
            # settle is shielded: the Fetcher cancels this coroutine again while it waits.
            with suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(self._finish_in_flight(timeout=10.0))

    def _fetch(self) -> asyncio.Future[Any]:
        async def fetch() -> Any:
            records, _ = await self._wait_next_records(timeout=1.0)
            return records

        return asyncio.ensure_future(fetch())

    def _check_rewind(self, batch: Mapping[TP, list[Any]]) -> None:
        app = self._dialer
        for tp, recs in batch.items():
            processed = self._processed.get(tp)
            if processed is not None and recs[0].offset < processed:
                # Within one assignment the position only goes back when the log did
                # (a wiped broker answers OffsetOutOfRange and we restart at its start).
                log.warning(
                    "%s[%d] went back from offset %d to %d; checking its incarnation",
                    tp.topic, tp.partition, processed, recs[0].offset,
                )  # fmt: skip
                app.incarnations.forget({(tp.topic, tp.partition)})

    async def _apply(self, prepared: Prepared) -> None:
        failpoints = self._dialer.failpoints
        failpoints.hit("before_apply")
        await self._retrying("applying a batch", lambda: self._dialer.processor.apply(prepared))
        failpoints.hit("after_apply")

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """Run a step against Redis or the broker until it succeeds. Nothing is marked
        processed meanwhile, and the fences make a repeated script call exact."""
        while True:
            try:
                return await attempt()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; retrying in 1 s", what)
                await asyncio.sleep(1.0)
                if self.should_stop:
                    raise

    async def _settle(self, in_flight: _InFlight | None) -> None:
        """Wait for a batch being applied, then mark its offsets processed (once)."""
        if in_flight is None:
            return
        # shielded: a cancel of the waiter (stop, revocation) must not abort the scripts
        await asyncio.shield(in_flight.task)
        async with self._settling:
            if in_flight.settled:
                return
            await self._mark(in_flight.batch, in_flight.ends)
            in_flight.settled = True
            if self._in_flight is in_flight:
                self._in_flight = None

    def _fetched_to(self) -> dict[TP, int]:
        thread = self._thread
        return dict(thread.positions) if isinstance(thread, _ConsumerThread) else {}

    def _skip_to(self, fetched_to: Mapping[TP, int]) -> None:
        """Idle, with every fetched record applied: a partition whose position moved past
        records that are not events (a transaction marker, an aborted batch) is processed
        up to there, so its commit and lag reach the log end."""
        for tp in self._get_active_partitions() - self._revoking:
            processed, position = self._processed.get(tp), fetched_to.get(tp)
            if processed is not None and position is not None and position > processed:
                self._processed[tp] = position

    async def _mark(self, batch: Mapping[TP, list[Any]], ends: Mapping[TP, int]) -> None:
        metrics.BATCH_SIZE.observe(sum(len(recs) for recs in batch.values()))
        app = self._dialer
        for recs in batch.values():
            app.incarnations.note(recs[0])
        await self._retrying("storing partition markers", app.incarnations.flush)
        # Paused partitions are still ours: a stop pauses every partition before the batch
        # in flight is marked and committed.
        current = self._get_active_partitions() | self._paused_partitions
        for tp, recs in batch.items():
            if tp not in current or tp in self._handed_over:
                continue  # moved to another worker meanwhile: its owner commits it
            # past the last record, and past markers the same fetch skipped after it
            self._processed[tp] = max(recs[-1].offset + 1, ends.get(tp, 0))
        await self._report_lag()

    async def _report_lag(self) -> None:
        """Lag of every partition this worker owns, at most once a second, idle or busy:
        the entries expire unless refreshed (/readyz drops what nobody owns any more)."""
        now = asyncio.get_running_loop().time()
        if now - self._lag_reported < 1.0:
            return
        self._lag_reported = now
        owned = self._get_active_partitions() - self._revoking
        owned_fields = {f"{tp.topic}:{tp.partition}" for tp in owned}
        for name in [name for name in self._lag if name not in owned_fields]:
            del self._lag[name]
        for tp in owned:
            processed = self._processed.get(tp)
            highwater = self.highwater(tp)
            if processed is None or highwater is None:
                continue
            lag = max(highwater - processed, 0)
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
            self._lag[f"{tp.topic}:{tp.partition}"] = lag
        with suppress(Exception):  # only informative (/readyz)
            await self._dialer.store.set_lag(self._lag)

    async def _report_holds(self) -> None:
        """Publish the partitions stuck before a batch they cannot decode (metric, /readyz);
        the fetcher pauses and retries them (`processors.fetching`)."""
        now = asyncio.get_running_loop().time()
        if now - self._holds_reported < 1.0:
            return
        self._holds_reported = now
        consumer = self._thread._consumer
        held = fetching.holds(consumer) if consumer is not None else {}
        stuck = {tp: hold for tp, hold in held.items() if hold.undecodable}
        await self._forget_stuck(set(self._stuck) - set(stuck))
        self._stuck = stuck
        for tp in stuck:
            metrics.PARTITION_STUCK.labels(tp.topic, str(tp.partition)).set(1)
        if stuck:
            with suppress(Exception):  # only informative (/readyz); refreshed every second
                await self._dialer.store.set_stuck(
                    {
                        f"{tp.topic}:{tp.partition}": {
                            "offset": hold.offset,
                            "reason": hold.reason,
                            "since": hold.since,
                            "retries": hold.retries,
                        }
                        for tp, hold in stuck.items()
                    }
                )

    async def _forget_stuck(self, tps: set[TP]) -> None:
        """These partitions are no longer stuck here (recovered, or revoked)."""
        if not tps:
            return
        for tp in tps:
            self._stuck.pop(tp, None)
            metrics.PARTITION_STUCK.labels(tp.topic, str(tp.partition)).set(0)
        with suppress(Exception):
            await self._dialer.store.drop_stuck(f"{tp.topic}:{tp.partition}" for tp in tps)


@dataclass
class _InFlight:
    """A batch whose script calls are running."""

    task: asyncio.Future[None]
    batch: Mapping[TP, list[Any]]
    ends: Mapping[TP, int] = field(default_factory=dict)  # positions after its fetch
    settled: bool = False


class BatchTransport(faust_aiokafka.Transport):
    """The aiokafka transport with the batch consumer."""

    Consumer: ClassVar[type[faust_aiokafka.Consumer]] = BatchConsumer
