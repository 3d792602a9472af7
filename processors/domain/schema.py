"""The event contract as pydantic models: the authoritative validator (pure, no I/O).

`validate(raw)` gives a model or a `Rejection` with a machine-readable reason. The hot path
decodes with the faster msgspec structs of `events` and comes here for everything those
do not accept outright, so reasons and edge formats are decided by these models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from processors.domain.contract import (
    EVENT_TYPES,
    ID_PATTERN,
    MAX_SECONDS,
    MAX_VERSION,
    TIME_RANGE_MESSAGE,
    Rejection,
    in_time_range,
    normalise_status,
)

EntityId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Count = Annotated[int, Field(ge=0, le=MAX_VERSION)]
Version = Annotated[int, Field(ge=1, le=MAX_VERSION)]


def _in_range(moment: datetime) -> datetime:
    if not in_time_range(moment):
        raise PydanticCustomError("time_out_of_range", TIME_RANGE_MESSAGE)
    return moment


#: naive times are taken as UTC where they are used
Instant = Annotated[datetime, AfterValidator(_in_range)]

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
    occurred_at: Instant
    version: Version


class BatchUpserted(_EventBase):
    """The batch's state after a change."""

    event_type: Literal["batch.upserted"]
    batch_id: EntityId
    status: BatchStatus
    total_contacts: Count
    created_at: Instant


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
    duration_seconds: Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)] | None = (
        None
    )


EventModel = BatchUpserted | ContactStatusChanged | CallRecordCompleted

_ADAPTER: TypeAdapter[EventModel] = TypeAdapter(
    Annotated[EventModel, Field(discriminator="event_type")]
)


def validate(raw: bytes) -> EventModel | Rejection:
    """Validate one message value with the models; never raises on data."""
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
    if kind == "time_out_of_range":
        return Rejection("time_out_of_range", f"{where} {first['msg']}")
    if field.endswith("_id") and kind == "string_pattern_mismatch":
        return Rejection(
            "invalid_id", f"{where} must be 1-128 characters of letters, digits, '_', '.', '-'"
        )
    return Rejection("invalid_field", f"{where}: {first['msg']}")
