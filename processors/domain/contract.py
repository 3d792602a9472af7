"""Constants of the event contract shared by the models, the structs and the views."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
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
#: A contact in one of these is done (batch progress counts them).
TERMINAL_STATUSES: Final = (
    "completed", "failed", "busy", "no_answer", "skipped", "max_retries_reached",
)  # fmt: skip
EVENT_TYPES: Final = ("batch.upserted", "contact.status_changed", "call_record.completed")

#: One-letter codes that pack entity state compactly; position in the status tuple.
CONTACT_CODES: Final = {s: chr(ord("a") + i) for i, s in enumerate(CONTACT_STATUSES)}
CALL_CODES: Final = {s: chr(ord("a") + i) for i, s in enumerate(CALL_STATUSES)}
BATCH_CODES: Final = {s: chr(ord("a") + i) for i, s in enumerate(BATCH_STATUSES)}
CONTACT_BY_CODE: Final = {c: s for s, c in CONTACT_CODES.items()}
CALL_BY_CODE: Final = {c: s for s, c in CALL_CODES.items()}
BATCH_BY_CODE: Final = {c: s for s, c in BATCH_CODES.items()}

#: Outcome codes returned per event by APPLY_SLICE (stable: the worker and the stats
#: hash's `events:*` tallies name them).
APPLIED, REPLAYED, STALE, TENANT_MISMATCH = range(4)

#: How long after its end a bucket of each resolution is kept: minutes 49 h, quarter
#: hours 401 days (at least 48 h and 400 days back from any moment of the last bucket).
MINUTE_RETENTION_MS: Final = 49 * 3_600_000
QUARTER_RETENTION_MS: Final = 401 * 86_400_000

MAX_VERSION: Final = 2**53  # counters and versions stay exact in Lua's doubles
#: A call's duration_seconds at most (about 31 years): talk time sums in milliseconds stay
#: exact in Lua's doubles.
MAX_SECONDS: Final = 10**9

#: The instants `occurred_at` and `created_at` may name: EARLIEST <= t < LATEST (a naive time
#: is taken as UTC). A batch's index score is its `created_at` in microseconds since the
#: epoch, held by Redis as a double: exact only within 2**53 microseconds of the epoch
#: (1684-09 to 2255-06), beyond which batches created microseconds apart would list out of
#: order. Nothing a dialer reports happened before the epoch (years like 0001 are zero
#: values of a producer's clock type), nor will for a couple of centuries; 2200 keeps a
#: margin of decades to the end of the exact range.
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2200, 1, 1, tzinfo=UTC)
TIME_RANGE_MESSAGE: Final = (
    "must be from 1970-01-01T00:00:00Z up to (not including) 2200-01-01T00:00:00Z"
)


def in_time_range(moment: datetime) -> bool:
    """Whether an `occurred_at` or `created_at` lies in [EARLIEST, LATEST)."""
    if 1970 < moment.year < 2199:  # whatever its zone offset (under a day)
        return True
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return EARLIEST <= aware < LATEST


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
