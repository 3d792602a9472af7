"""Publishing events: routing to topics and keys (pure) and the Kafka producer edge."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from processors.domain.contract import Rejection
from processors.domain.events import BatchUpserted, ContactStatusChanged, Event, parse
from processors.settings import Settings

_ENTITY_FIELDS = {
    "batch.upserted": "batch_id",
    "contact.status_changed": "contact_id",
    "call_record.completed": "execution_id",
}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish."""

    topic: str
    key: bytes | None
    value: bytes


def topic_for(event_type: str, settings: Settings) -> str:
    """The topic of an event type (section 2 of the contract)."""
    return {
        "batch.upserted": settings.topic_batches,
        "contact.status_changed": settings.topic_contacts,
        "call_record.completed": settings.topic_call_records,
    }[event_type]


def route_event(event: Event, value: bytes, settings: Settings) -> Outgoing:
    """A validated event to its topic, keyed by its entity id."""
    if isinstance(event, BatchUpserted):
        key = event.batch_id
    elif isinstance(event, ContactStatusChanged):
        key = event.contact_id
    else:
        key = event.execution_id
    return Outgoing(topic_for(event.event_type, settings), key.encode(), value)


def route_raw(line: bytes, settings: Settings) -> Outgoing:
    """Any line, verbatim: a JSON object with a known event_type to its topic, else contacts."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        obj = None
    if isinstance(obj, dict) and obj.get("event_type") in _ENTITY_FIELDS:
        event_type = obj["event_type"]
        entity = obj.get(_ENTITY_FIELDS[event_type])
        key = entity.encode() if isinstance(entity, str) else None
        return Outgoing(topic_for(event_type, settings), key, line)
    return Outgoing(settings.topic_contacts, None, line)


def route_lines(
    lines: Iterable[bytes], settings: Settings, *, raw: bool, max_bytes: int
) -> tuple[list[Outgoing], list[tuple[int, Rejection]]]:
    """Messages to publish and, without `raw`, the refused lines (1-based numbers)."""
    outgoing: list[Outgoing] = []
    refused: list[tuple[int, Rejection]] = []
    for number, line in enumerate(lines, start=1):
        line = line.rstrip(b"\r\n")
        if raw:
            outgoing.append(route_raw(line, settings))
            continue
        if not line.strip():
            continue
        parsed = parse(line, max_bytes=max_bytes)
        if isinstance(parsed, Rejection):
            refused.append((number, parsed))
        else:
            outgoing.append(route_event(parsed, line, settings))
    return outgoing, refused


async def open_producer(settings: Settings) -> AIOKafkaProducer:
    """A started producer that waits for every replica, allows large raw messages and
    compresses with `settings.compression`."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        linger_ms=5,
        max_request_size=4 * 1024 * 1024,
        compression_type=settings.compression_type,
    )
    await producer.start()
    return producer


async def publish(
    producer: AIOKafkaProducer, messages: Iterable[Outgoing], *, window: int = 2000
) -> AsyncIterator[int]:
    """Send messages in order, yielding how many are acknowledged after each window."""
    pending: list[asyncio.Future[object]] = []
    for message in messages:
        pending.append(await producer.send(message.topic, message.value, key=message.key))
        if len(pending) >= window:
            await asyncio.gather(*pending)
            yield len(pending)
            pending = []
    if pending:
        await asyncio.gather(*pending)
        yield len(pending)
