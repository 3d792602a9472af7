"""The dialer's MongoDB as the source of truth (DESIGN section 4a).

Per campaign: an indexed `campaign_id` find() with a projection on each of `batches`,
`contacts` and `call_records`, read through a cursor; every document is validated like an
event (`documents.to_event`). Campaigns come from `distinct("campaign_id")` of each
collection. Nothing relies on server-side aggregation.

The event log still tells how far the worker has got: `ends` (the source topics' end
offsets taken before a campaign is read) fence removals -- an entity the worker applied
from before those offsets was written to the database before the read began (the dialer
writes the database, then publishes) -- and `committed()` is the worker group's progress.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.cursor import AsyncCursor

from processors.domain.events import Event, entity_id
from processors.reconcile.documents import KINDS, InvalidDocument, Kind, projection, to_event
from processors.settings import Settings

log = logging.getLogger(__name__)

#: Documents fetched per cursor round trip.
CURSOR_BATCH = 2000


@dataclass
class CampaignDocuments:
    """One campaign as the database holds it."""

    campaign_id: str
    events: list[Event] = field(default_factory=list)
    invalid: list[InvalidDocument] = field(default_factory=list)
    read: int = 0


@dataclass
class _FakeRecord:
    """A database document as a `Record` for the generic `Source.read`."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


async def prefetched(cursor: AsyncCursor[dict[str, Any]]) -> AsyncIterator[list[dict[str, Any]]]:
    """The cursor's documents batch by batch, the next batch asked for before the current one
    is handed over: the database prepares it while the caller converts this one."""
    queue: asyncio.Queue[list[dict[str, Any]] | BaseException | None] = asyncio.Queue(2)

    async def pump() -> None:
        try:
            while docs := await cursor.to_list(CURSOR_BATCH):
                await queue.put(docs)
            await queue.put(None)
        except Exception as exc:  # handed to the reader, raised there
            await queue.put(exc)

    task = asyncio.create_task(pump())
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await cursor.close()


class MongoSource:
    """Reads campaigns from the dialer's MongoDB (`mongodb://HOST:PORT/DB`)."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.settings = settings
        self.url = url
        self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url, serverSelectionTimeoutMS=10_000, tz_aware=True
        )
        self.collections: dict[Kind, str] = {
            "batches": settings.mongo_batches,
            "contacts": settings.mongo_contacts,
            "call_records": settings.mongo_call_records,
        }
        self.ends: dict[str, int] = {}
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def database(self) -> Any:
        return self.client.get_default_database(default="dialer")

    async def close(self) -> None:
        await self.client.close()
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def ensure_indexes(self) -> None:
        """A `campaign_id` index on every collection (no-op when it exists)."""
        for name in self.collections.values():
            await self.database[name].create_index([("campaign_id", ASCENDING)])

    async def campaigns(self) -> list[str]:
        """Every campaign id any of the collections names."""
        found: set[str] = set()
        for name in self.collections.values():
            values = await self.database[name].distinct("campaign_id")
            found.update(v for v in values if isinstance(v, str))
        return sorted(found)

    async def read_campaign(self, campaign_id: str, *, max_bytes: int) -> CampaignDocuments:
        """The campaign's documents as validated events (batches, contacts, records)."""
        out = CampaignDocuments(campaign_id)
        read_at = datetime.now(UTC)
        for kind in KINDS:
            cursor = self.database[self.collections[kind]].find(
                {"campaign_id": campaign_id}, projection(kind), batch_size=CURSOR_BATCH
            )
            async for docs in prefetched(cursor):
                out.read += len(docs)
                for doc in docs:
                    event = to_event(kind, doc, read_at=read_at, max_bytes=max_bytes)
                    if isinstance(event, InvalidDocument):
                        out.invalid.append(event)
                    else:
                        out.events.append(event)
        return out

    async def read(
        self, progress: Callable[[int, int], None] | None = None
    ) -> AsyncIterator[list[Any]]:
        """`Source.read`: every valid document as an event record, campaign by campaign
        (offsets number the documents; the log offsets are in `ends`)."""
        campaigns = await self.campaigns()
        self.ends = await self.log_ends()
        offset = 0
        for n, campaign_id in enumerate(campaigns, start=1):
            docs = await self.read_campaign(campaign_id, max_bytes=self.settings.max_message_bytes)
            batch = []
            for event in docs.events:
                key, value = entity_id(event).encode(), msgspec.json.encode(event)
                batch.append(_FakeRecord(f"mongodb:{campaign_id}", 0, offset, key, value))
                offset += 1
            if batch:
                yield batch
            if progress:
                progress(n, len(campaigns))

    # -- the event log's progress ----------------------------------------------------

    async def _kafka(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                group_id=self.settings.consumer_group,
                enable_auto_commit=False,
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def _partitions(self) -> list[TopicPartition]:
        consumer = await self._kafka()
        await consumer.topics()
        return [
            TopicPartition(topic, p)
            for topic in self.settings.source_topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]

    async def log_ends(self) -> dict[str, int]:
        """`topic:partition` -> the source topics' end offsets now (a lower bound on
        Tansu, which is safe: fences at or past it refuse removals)."""
        try:
            tps = await self._partitions()
            ends = await (await self._kafka()).end_offsets(tps)
        except KafkaError as exc:
            log.warning("reading the log's end offsets failed: %s", exc)
            return {}
        return {f"{tp.topic}:{tp.partition}": int(off) for tp, off in ends.items()}

    async def committed(self) -> dict[str, int]:
        """The worker group's committed offsets of the source partitions."""
        offsets: dict[str, int] = {}
        try:
            consumer = await self._kafka()
            for tp in await self._partitions():
                offset = await consumer.committed(tp)
                if offset is not None:
                    offsets[f"{tp.topic}:{tp.partition}"] = offset
        except KafkaError as exc:  # only a hint: the fences still tell
            log.warning("reading the group's committed offsets failed: %s", exc)
        return offsets
