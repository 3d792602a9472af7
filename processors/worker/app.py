"""The faust worker: faust keeps the app, group membership, assignment and commits; whole
fetched record batches bypass its per-message machinery (`consumer.BatchConsumer`, the one
module that knows faust's internals) and go to `BatchProcessor`."""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass
from typing import Any, cast

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from processors import fetching
from processors.settings import Settings
from processors.store.client import Store, connect
from processors.worker.consumer import BatchTransport
from processors.worker.failpoints import Failpoints
from processors.worker.incarnation import Incarnations
from processors.worker.pipeline import BatchProcessor, Record


class DialerApp(faust.App):
    """The faust app: topics, the batch pipeline and its Redis store."""

    processor: BatchProcessor
    incarnations: Incarnations
    store: Store
    probe: _Probe
    fetch_max_wait_ms: int = 100
    failpoints: Failpoints = Failpoints()

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)

    async def on_stop(self) -> None:
        await super().on_stop()
        await self.probe.close()
        await self.store.close()


def create_app(settings: Settings) -> DialerApp:
    """Build the worker app for the given settings."""
    fetching.install()
    brokers = [f"kafka://{host.strip()}" for host in settings.kafka_bootstrap_servers.split(",")]
    app = DialerApp(
        settings.consumer_group,
        broker=brokers,
        web_enabled=False,
        store="memory://",
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout,
        broker_rebalance_timeout=settings.session_timeout,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=settings.commit_interval,
        broker_max_poll_records=settings.fetch_max_records,
        broker_request_timeout=30.0,
        producer_acks=-1,
        producer_compression_type=settings.compression_type,
    )
    store = Store(connect(settings))
    dead_letter_topic = settings.topic_dead_letter
    probe = _Probe(settings)

    async def send_dead_letter(key: bytes | None, value: bytes, headers: list[Any]) -> None:
        await app.producer.send_and_wait(dead_letter_topic, key, value, None, None, headers)

    app.store, app.probe = store, probe
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    app.failpoints = Failpoints(settings.failpoint)
    app.incarnations = Incarnations(store, probe.first)
    app.processor = BatchProcessor(
        store,
        send_dead_letter,
        app.incarnations.epoch,
        max_message_bytes=settings.max_message_bytes,
        failpoint=app.failpoints.hit,
    )
    for name in settings.source_topics:
        topic = app.topic(name, key_type=bytes, value_type=bytes, value_serializer="raw")
        app.topics.add(topic)

    return app


class _Probe:
    """Reads the first record of a partition with a group-less consumer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: AIOKafkaConsumer | None = None

    async def first(self, topic: str, partition: int) -> Record | None:
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=50,  # Tansu holds a fetch for the whole wait
                isolation_level=fetching.ISOLATION_LEVEL,
            )
            await self._consumer.start()
        consumer = self._consumer
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        start = await consumer.position(tp)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while loop.time() < deadline:
            fetched = await consumer.getmany(tp, timeout_ms=300, max_records=1)
            records = fetched.get(tp, [])
            if records:
                return cast(Record, records[0])
            highwater = consumer.highwater(tp)
            if highwater is not None and highwater <= start:
                return None  # empty log
            hold = fetching.holds(consumer).get(tp)
            if hold is not None and hold.undecodable and hold.offset == start:
                # The first batch cannot be decoded (yet): its offset stands in for the
                # record, the same every time until it decodes.
                return _Undecodable(topic, partition, start)
        return None

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()


@dataclass(frozen=True, slots=True)
class _Undecodable:
    """The first record of a log whose first batch cannot be decoded."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run one worker in the foreground until SIGINT/SIGTERM."""
    if settings.worker_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.worker_metrics_port, addr=settings.api_host)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    quiet_collector()
    worker.execute_from_commandline()


#: Allocations between two young-generation collections (CPython's default is 700).
YOUNG_THRESHOLD = 20_000


def quiet_collector() -> None:
    """Keep the cyclic collector off the hot path.

    A fetched batch is tens of thousands of records, events and strings that live for
    one turn of the pipeline; at the default thresholds they outlive several young
    collections, fill the old generation and trigger a full collection about every half
    second, each scanning everything the process holds (a quarter of the worker's time
    in a 1M-event drain). What was loaded at start is frozen out of the collector's reach,
    and young collections run every 20,000 allocations instead of 700.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 50, 100)
