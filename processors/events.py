"""The event contract: models, status normalisation and validation (pure, no I/O).

`parse(raw)` turns one Kafka message value into an `Event` or a `Rejection`; it never
raises on data. Status values are case-insensitive and `-` equals `_`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

BATCH_STATUSES: Final = ("pending", "in_progress", "paused", "completed", "cancelled", "expired")
CONTACT_STATUSES: Final = (
    "pending",
    "dispatched",
    "in_progress",
    "retrying",
    "completed",
    "failed",
    "busy",
    "no_answer",
    "skipped",
    "followup_scheduled",
    "max_retries_reached",
)
CALL_STATUSES: Final = ("completed", "failed", "busy", "no_answer")
IN_FLIGHT_STATUSES: Final = ("dispatched", "in_progress", "retrying", "followup_scheduled")

MAX_VERSION: Final = 2**53  # counters and versions stay exact in Lua's doubles


def normalise_status(value: Any) -> Any:
    """`NO-ANSWER`, `No_Answer` and `no_answer` are the same status."""
    if isinstance(value, str):
        return value.strip().lower().replace("-", "_")
    return value


# Ids become parts of Redis keys and hash tags, so `{ } : *`, spaces and the like are refused.
EntityId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,128}$")]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Count = Annotated[int, Field(ge=0, le=MAX_VERSION)]
Version = Annotated[int, Field(ge=1, le=MAX_VERSION)]

BatchStatus = Annotated[
    Literal["pending", "in_progress", "paused", "completed", "cancelled", "expired"],
    BeforeValidator(normalise_status),
]
ContactStatus = Annotated[
    Literal[
        "pending",
        "dispatched",
        "in_progress",
        "retrying",
        "completed",
        "failed",
        "busy",
        "no_answer",
        "skipped",
        "followup_scheduled",
        "max_retries_reached",
    ],
    BeforeValidator(normalise_status),
]
CallStatus = Annotated[
    Literal["completed", "failed", "busy", "no_answer"], BeforeValidator(normalise_status)
]


class _EventBase(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    event_id: EventId
    organization_id: EntityId
    campaign_id: EntityId
    occurred_at: datetime
    version: Version

    @field_validator("occurred_at", mode="after")
    @classmethod
    def _as_utc(cls, value: datetime) -> datetime:
        return _as_utc(value)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class BatchUpserted(_EventBase):
    """The batch's state after a change."""

    event_type: Literal["batch.upserted"]
    batch_id: EntityId
    status: BatchStatus
    total_contacts: Count
    created_at: datetime

    @field_validator("created_at", mode="after")
    @classmethod
    def _created_utc(cls, value: datetime) -> datetime:
        return _as_utc(value)


class ContactStatusChanged(_EventBase):
    """The contact's state after a change."""

    event_type: Literal["contact.status_changed"]
    batch_id: EntityId
    contact_id: EntityId
    status: ContactStatus
    retry_count: Count
    follow_up_count: Count


class CallRecordCompleted(_EventBase):
    """One call attempt with a known outcome."""

    event_type: Literal["call_record.completed"]
    batch_id: EntityId
    contact_id: EntityId
    execution_id: EntityId
    call_status: CallStatus
    is_follow_up: bool
    retry_index: Count
    duration_seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


Event = BatchUpserted | ContactStatusChanged | CallRecordCompleted
EVENT_TYPES: Final = ("batch.upserted", "contact.status_changed", "call_record.completed")

_ADAPTER: TypeAdapter[Event] = TypeAdapter(Annotated[Event, Field(discriminator="event_type")])


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message is not a valid event; `reason` is machine-readable."""

    reason: str
    message: str


def entity_id(event: Event) -> str:
    """The id of the entity whose versions the event orders."""
    if isinstance(event, BatchUpserted):
        return event.batch_id
    if isinstance(event, ContactStatusChanged):
        return event.contact_id
    return event.execution_id


def parse(raw: bytes | None, *, max_bytes: int = 64 * 1024) -> Event | Rejection:
    """Validate one message value; never raises on data."""
    if raw is None or len(raw) == 0:
        return Rejection("invalid_json", "empty message")
    if len(raw) > max_bytes:
        return Rejection("oversized", f"message of {len(raw)} bytes exceeds {max_bytes} bytes")
    try:
        return _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        return _rejection(exc)


_STATUS_FIELDS: Final = {"status", "call_status"}
_COUNT_FIELDS: Final = {"total_contacts", "retry_count", "follow_up_count", "retry_index"}


def _rejection(exc: ValidationError) -> Rejection:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    kind = first["type"]
    loc = [str(part) for part in first["loc"]]
    field = loc[-1] if loc else ""
    where = ".".join(loc[1:] if len(loc) > 1 else loc)
    if kind == "json_invalid" or kind == "json_type":
        return Rejection("invalid_json", f"not valid JSON: {first['msg']}")
    if kind in ("model_attributes_type", "model_type", "dict_type") and len(loc) <= 1:
        return Rejection("not_an_object", "the message is JSON but not an object")
    if kind == "union_tag_not_found":
        return Rejection("missing_field", "missing field 'event_type'")
    if kind == "union_tag_invalid":
        return Rejection(
            "unknown_event_type",
            f"unknown event_type; expected one of {', '.join(EVENT_TYPES)}",
        )
    if kind == "missing":
        return Rejection("missing_field", f"missing field '{where}'")
    if field in _STATUS_FIELDS and kind == "literal_error":
        return Rejection("unknown_status", f"unknown {where}: {first['msg']}")
    if field in _COUNT_FIELDS and kind == "greater_than_equal":
        return Rejection("negative_count", f"{where} must be >= {first['ctx']['ge']}")
    if field.endswith("_id") and kind == "string_pattern_mismatch":
        return Rejection(
            "invalid_id", f"{where} must be 1-128 characters of letters, digits, '_', '.', '-'"
        )
    return Rejection("invalid_field", f"{where}: {first['msg']}")
