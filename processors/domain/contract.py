"""Constants of the event contract shared by the models, the structs and the views."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

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
EVENT_TYPES: Final = ("batch.upserted", "contact.status_changed", "call_record.completed")

MAX_VERSION: Final = 2**53  # counters and versions stay exact in Lua's doubles

# Ids become parts of Redis keys and hash tags, so `{ } : *`, spaces and the like are refused.
ID_PATTERN: Final = r"^[A-Za-z0-9_.\-]{1,128}$"


def normalise_status(value: Any) -> Any:
    """`NO-ANSWER`, `No_Answer` and `no_answer` are the same status."""
    if isinstance(value, str):
        return value.strip().lower().replace("-", "_")
    return value


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message is not a valid event; `reason` is machine-readable."""

    reason: str
    message: str
