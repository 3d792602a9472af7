"""The simulated dialer's database: its documents written as it publishes (a dual write).

Every event's entity is upserted into `batches`, `contacts` or `call_records` by id with
its version -- a newer version replaces the document, an older one (a delayed delivery)
changes nothing -- *before* the event is published, as a dialer writes its database and
then publishes. A `drop_rate` loses that fraction of the events on the way to Kafka while
the database keeps them: the dual-write gaps reconciliation from the database repairs.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, UpdateOne
from pymongo.errors import BulkWriteError

from processors.reconcile.documents import FIELDS, ID_FIELD, Kind
from processors.settings import Settings

Event = dict[str, Any]

KIND_OF: dict[str, Kind] = {
    "batch.upserted": "batches",
    "contact.status_changed": "contacts",
    "call_record.completed": "call_records",
}
DUPLICATE_KEY = 11000


def document(event: Event) -> tuple[Kind, str, dict[str, Any]]:
    """(collection kind, entity id, the document's fields) of an event."""
    kind = KIND_OF[event["event_type"]]
    entity = str(event[ID_FIELD[kind]])
    return kind, entity, {k: event[k] for k in FIELDS[kind] if k in event}


def latest_per_entity(events: Iterable[Event]) -> dict[tuple[Kind, str], dict[str, Any]]:
    """The highest version of each entity among the events."""
    best: dict[tuple[Kind, str], dict[str, Any]] = {}
    for event in events:
        kind, entity, doc = document(event)
        held = best.get((kind, entity))
        if held is None or doc["version"] > held["version"]:
            best[kind, entity] = doc
    return best


class DualWriter:
    """Upserts the documents of event chunks; decides which events reach Kafka."""

    def __init__(self, settings: Settings, url: str, *, drop_rate: float, seed: int) -> None:
        self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
        self.database = self.client.get_default_database(default="dialer")
        self.names: dict[Kind, str] = {
            "batches": settings.mongo_batches,
            "contacts": settings.mongo_contacts,
            "call_records": settings.mongo_call_records,
        }
        self.drop_rate = drop_rate
        self.rng = random.Random(seed ^ 0x5EED)
        self.dropped = 0

    async def start(self) -> None:
        """Indexes the reconciler reads by."""
        for name in self.names.values():
            await self.database[name].create_index([("campaign_id", ASCENDING)])

    async def close(self) -> None:
        await self.client.close()

    async def write(self, events: list[Event]) -> list[Event]:
        """Write the chunk's documents; return the events that go on to Kafka."""
        by_kind: dict[Kind, list[UpdateOne]] = {}
        for (kind, entity), doc in latest_per_entity(events).items():
            by_kind.setdefault(kind, []).append(
                UpdateOne(
                    {"_id": entity, "version": {"$lt": doc["version"]}},
                    {"$set": doc},
                    upsert=True,
                )
            )
        for kind, ops in by_kind.items():
            try:
                await self.database[self.names[kind]].bulk_write(ops, ordered=False)
            except BulkWriteError as exc:  # a newer version is there already: keep it
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
        kept = [e for e in events if self.rng.random() >= self.drop_rate]
        self.dropped += len(events) - len(kept)
        return kept
