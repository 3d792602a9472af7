"""Database documents as events (pure, no I/O).

A document of the dialer's `batches`, `contacts` or `call_records` collection is the
latest state of one entity: the same fields as the entity's event (DESIGN section 4a),
with its id in `batch_id` / `contact_id` / `execution_id` or else `_id`. It is turned
into that event and validated exactly like one read from Kafka (`events.parse`: statuses
normalised, counts and versions checked); a document that fails is an `InvalidDocument`
with its id and the reason, never folded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgspec

from processors.domain.contract import Rejection
from processors.domain.events import Event, parse, parse_fields

Kind = Literal["batches", "contacts", "call_records"]
KINDS: Final[tuple[Kind, ...]] = ("batches", "contacts", "call_records")

EVENT_TYPE: Final[dict[Kind, str]] = {
    "batches": "batch.upserted",
    "contacts": "contact.status_changed",
    "call_records": "call_record.completed",
}
ID_FIELD: Final[dict[Kind, str]] = {
    "batches": "batch_id",
    "contacts": "contact_id",
    "call_records": "execution_id",
}
#: The fields read of each collection (the projection).
FIELDS: Final[dict[Kind, tuple[str, ...]]] = {
    "batches": (
        "batch_id", "organization_id", "campaign_id", "status", "total_contacts",
        "created_at", "version",
    ),
    "contacts": (
        "contact_id", "organization_id", "campaign_id", "batch_id", "status", "retry_count",
        "follow_up_count", "version",
    ),
    "call_records": (
        "execution_id", "organization_id", "campaign_id", "batch_id", "contact_id",
        "call_status", "is_follow_up", "retry_index", "duration_seconds", "occurred_at",
        "version",
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class InvalidDocument:
    """A document that is not a valid entity state: reported, never applied."""

    collection: Kind
    id: str
    reason: str
    message: str


def projection(kind: Kind) -> dict[str, int]:
    """The find() projection of a collection (`_id` comes with every document)."""
    return dict.fromkeys(FIELDS[kind], 1)


def _iso(value: datetime) -> str:
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return moment.isoformat().replace("+00:00", "Z")


def _plain(value: object) -> object:
    """JSON for what BSON decodes to: datetimes as ISO-8601, anything else as text."""
    if isinstance(value, datetime):
        return _iso(value)
    return str(value)


_TIMES: Final = ("occurred_at", "created_at")


def _aware(value: object) -> object:
    """A naive datetime (BSON's, without a zone) is UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _encode(event: dict[str, Any]) -> bytes:
    """The event as JSON (msgspec: datetimes as RFC 3339, other BSON types as text)."""
    return msgspec.json.encode(event, enc_hook=_plain)


def document_id(kind: Kind, doc: dict[str, Any]) -> str:
    """The entity id of a document: its id field, else `_id`."""
    value = doc.get(ID_FIELD[kind])
    if value is None:
        value = doc.get("_id")
    return str(value)


def to_event(
    kind: Kind, doc: dict[str, Any], *, read_at: datetime, max_bytes: int = 64 * 1024
) -> Event | InvalidDocument:
    """The event whose state the document holds, validated like one from Kafka."""
    entity = document_id(kind, doc)
    fields = {k: doc[k] for k in FIELDS[kind] if k in doc}
    fields[ID_FIELD[kind]] = doc.get(ID_FIELD[kind], doc.get("_id"))
    version = fields.get("version")
    event = {
        **fields,
        "event_id": f"db:{kind}:{entity}:{version}",
        "event_type": EVENT_TYPE[kind],
        "occurred_at": fields.get("occurred_at") or read_at,
    }
    for name in _TIMES:
        if name in event:
            event[name] = _aware(event[name])
    fast = parse_fields(event)
    if fast is not None:
        return fast
    if any(isinstance(v, float) and not math.isfinite(v) for v in event.values()):
        return InvalidDocument(kind, entity, "invalid_json", "a number is NaN or infinite")
    try:
        raw = _encode(event)
    except (TypeError, ValueError, msgspec.EncodeError) as exc:  # e.g. a circular value
        return InvalidDocument(kind, entity, "invalid_json", str(exc))
    parsed = parse(raw, max_bytes=max_bytes)
    if isinstance(parsed, Rejection):
        return InvalidDocument(kind, entity, parsed.reason, parsed.message)
    return parsed
