"""Events as the pipeline sees them, and `parse(raw) -> Event | Rejection` (pure, no I/O).

The events are msgspec structs: decoding and validating one takes about a microsecond,
several times less than the pydantic models of `schema`, which stay the authority. A
message the structs do not accept outright -- anything invalid, or an unusual but valid
spelling -- is validated by the models, which decide the rejection reason. Property tests
hold the structs to accept nothing the models refuse, with equal values.

A value framed by a schema-registry JSON serializer (magic byte 0, a 4-byte schema id, then
the JSON) is the same event as the bare JSON: the frame is dropped before decoding. JSON
text never starts with a zero byte, so one byte tells them apart.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final

import msgspec

from processors.domain.contract import (
    BATCH_STATUSES,
    CALL_STATUSES,
    CONTACT_STATUSES,
    ID_PATTERN,
    MAX_SECONDS,
    MAX_VERSION,
    Rejection,
    in_time_range,
    normalise_status,
)
from processors.domain.schema import EventModel, validate

# Ids are checked after decoding, all of an event's at once (`_ids_valid`): a pattern
# constraint per field made decoding four times slower.
EntityId = str
EventId = str
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_VERSION)]
Version = Annotated[int, msgspec.Meta(ge=1, le=MAX_VERSION)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]


# gc=False: an event holds only strings, numbers and times, so it can be in no reference
# cycle; untracked, the tens of thousands of a fetched batch cost the collector nothing.
class _Common(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag_field="event_type"):
    event_id: EventId
    organization_id: EntityId
    campaign_id: EntityId
    occurred_at: datetime  # naive times are taken as UTC where they are used
    version: Version


class BatchUpserted(_Common, frozen=True, kw_only=True, gc=False, tag="batch.upserted"):
    """The batch's state after a change."""

    event_type: ClassVar[str] = "batch.upserted"
    batch_id: EntityId
    status: str
    total_contacts: Count
    created_at: datetime


class ContactStatusChanged(
    _Common, frozen=True, kw_only=True, gc=False, tag="contact.status_changed"
):
    """The contact's state after a change."""

    event_type: ClassVar[str] = "contact.status_changed"
    batch_id: EntityId
    contact_id: EntityId
    status: str
    retry_count: Count
    follow_up_count: Count


class CallRecordCompleted(
    _Common, frozen=True, kw_only=True, gc=False, tag="call_record.completed"
):
    """One call attempt with a known outcome."""

    event_type: ClassVar[str] = "call_record.completed"
    batch_id: EntityId
    contact_id: EntityId
    execution_id: EntityId
    call_status: str
    is_follow_up: bool
    retry_index: Count
    duration_seconds: Seconds | None = None


Event = BatchUpserted | ContactStatusChanged | CallRecordCompleted

_DECODER: Final = msgspec.json.Decoder(Event)
_BATCH: Final = frozenset(BATCH_STATUSES)
_CONTACT: Final = frozenset(CONTACT_STATUSES)
_CALL: Final = frozenset(CALL_STATUSES)
# msgspec rounds sub-microsecond fractions where pydantic truncates them: leave those to it.
_NANOS: Final = re.compile(rb"\.\d{7}")
_ID: Final = ID_PATTERN.removeprefix("^").removesuffix("$")
#: An event's entity ids joined by a separator no id contains, matched in one go.
_IDS: Final = re.compile(rf"{_ID}(?:\x1f{_ID})*")
_MAX_EVENT_ID: Final = 256


def _ids_valid(event: Event) -> bool:
    """Whether every id of the event is what `ID_PATTERN` allows (and the event id 1-256
    characters long)."""
    if not 0 < len(event.event_id) <= _MAX_EVENT_ID:
        return False
    ids: tuple[str, ...]
    if isinstance(event, ContactStatusChanged):
        ids = (event.organization_id, event.campaign_id, event.batch_id, event.contact_id)
    elif isinstance(event, CallRecordCompleted):
        ids = (
            event.organization_id, event.campaign_id, event.batch_id, event.contact_id,
            event.execution_id,
        )  # fmt: skip
    else:
        ids = (event.organization_id, event.campaign_id, event.batch_id)
    joined = "\x1f".join(ids)
    # an id holding the separator itself would read as two: count them
    return joined.count("\x1f") == len(ids) - 1 and _IDS.fullmatch(joined) is not None


def entity_id(event: Event) -> str:
    """The id of the entity whose versions the event orders."""
    if isinstance(event, BatchUpserted):
        return event.batch_id
    if isinstance(event, ContactStatusChanged):
        return event.contact_id
    return event.execution_id


#: Schema-registry wire format: magic byte 0 and a 4-byte big-endian schema id.
FRAME_BYTES: Final = 5


def parse(raw: bytes | None, *, max_bytes: int = 64 * 1024) -> Event | Rejection:
    """Validate one message value; never raises on data."""
    if raw is None or len(raw) == 0:
        return Rejection("invalid_json", "empty message")
    if len(raw) > max_bytes:
        return Rejection("oversized", f"message of {len(raw)} bytes exceeds {max_bytes} bytes")
    if raw[0] == 0:  # schema-registry framing
        if len(raw) <= FRAME_BYTES:
            return Rejection("invalid_json", "a schema-registry frame without a payload")
        raw = raw[FRAME_BYTES:]
    if _NANOS.search(raw) is None:
        try:
            event = _DECODER.decode(raw)
        except msgspec.MsgspecError:
            pass
        else:
            fast = _normalised(event)
            if fast is not None:
                return fast
    outcome = validate(raw)
    if isinstance(outcome, Rejection):
        return outcome
    return _from_model(outcome)


def parse_fields(fields: dict[str, Any]) -> Event | None:
    """An event built straight from decoded fields (a database document), when they pass
    the fast checks; None when they need `parse` of their JSON to decide or to say why."""
    try:
        event = msgspec.convert(fields, Event)
    except msgspec.MsgspecError:
        return None
    return _normalised(event)


def _normalised(event: Event) -> Event | None:
    """The event with its status normalised, or None when the models must decide: an
    unknown status, an id out of pattern, or a time out of range
    (`contract.in_time_range`)."""
    if not _ids_valid(event):
        return None
    if not in_time_range(event.occurred_at):
        return None
    if isinstance(event, BatchUpserted) and not in_time_range(event.created_at):
        return None
    if isinstance(event, CallRecordCompleted):
        status, allowed = event.call_status, _CALL
    else:
        status, allowed = event.status, _BATCH if isinstance(event, BatchUpserted) else _CONTACT
    if status in allowed:
        return event
    normal = normalise_status(status)
    if normal not in allowed:
        return None
    if isinstance(event, CallRecordCompleted):
        return msgspec.structs.replace(event, call_status=normal)
    return msgspec.structs.replace(event, status=normal)


def _from_model(model: EventModel) -> Event:
    fields = model.model_dump(exclude={"event_type"})
    if model.event_type == "batch.upserted":
        return BatchUpserted(**fields)
    if model.event_type == "contact.status_changed":
        return ContactStatusChanged(**fields)
    return CallRecordCompleted(**fields)
