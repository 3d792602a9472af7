"""Turn stored counter hashes into the API's JSON shapes (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from processors.domain.contract import (
    BATCH_STATUSES,
    CALL_STATUSES,
    CONTACT_STATUSES,
    IN_FLIGHT_STATUSES,
    TERMINAL_STATUSES,
)

#: Batch counters: the incumbent's eight keys in its order (`in_flight` is `in_progress`),
#: then the remaining contact statuses so that the counters sum to the known contacts.
BATCH_COUNTER_KEYS: tuple[tuple[str, str], ...] = (
    ("pending", "pending"),
    ("dispatched", "dispatched"),
    ("in_flight", "in_progress"),
    ("retrying", "retrying"),
    ("completed", "completed"),
    ("failed", "failed"),
    ("busy", "busy"),
    ("no_answer", "no_answer"),
    ("skipped", "skipped"),
    ("followup_scheduled", "followup_scheduled"),
    ("max_retries_reached", "max_retries_reached"),
)

Hash = Mapping[str, str]


def _int(fields: Hash, name: str) -> int:
    return int(fields.get(name, 0))


def retry_breakdown(fields: Hash) -> dict[str, int]:
    """`{"retry_1": n, ...}` ordered by retry count, zero entries omitted."""
    entries = []
    for name, value in fields.items():
        if name.startswith("retry:") and int(value) != 0:
            entries.append((int(name[6:]), int(value)))
    return {f"retry_{count}": n for count, n in sorted(entries)}


def stats_view(campaign_id: str, fields: Hash) -> dict[str, Any]:
    """The `GET /campaigns/{id}/stats` body from the campaign's stats hash."""
    contact_counts = {s: _int(fields, f"contacts:{s}") for s in CONTACT_STATUSES}
    call_counters = {f"{s}_calls": _int(fields, f"calls:{s}") for s in CALL_STATUSES}
    call_counters["follow_up_calls"] = _int(fields, "calls:follow_up")
    return {
        "campaign_id": campaign_id,
        "contact_counts": contact_counts,
        "batch_counts": {s: _int(fields, f"batches:{s}") for s in BATCH_STATUSES},
        "call_counters": call_counters,
        "retry_breakdown": retry_breakdown(fields),
        "in_flight_contacts": sum(contact_counts[s] for s in IN_FLIGHT_STATUSES),
        "total_call_attempts": sum(_int(fields, f"calls:{s}") for s in CALL_STATUSES),
        "follow_up_attempts": call_counters["follow_up_calls"],
    }


def batch_view(campaign_id: str, batch_id: str, fields: Hash) -> dict[str, Any]:
    """One item of `GET /campaigns/{id}/batches` from the batch's hash."""
    created_at = fields.get("created_at") or None
    total = fields.get("total")
    return {
        "batch_id": batch_id,
        "campaign_id": campaign_id,
        "status": fields.get("s", "pending"),
        "total_contacts": int(total) if total is not None else _int(fields, "known"),
        "counters": {key: _int(fields, f"contacts:{s}") for key, s in BATCH_COUNTER_KEYS},
        "retry_breakdown": retry_breakdown(fields),
        "created_at": created_at,
    }


#: Batch progress counts contacts that became terminal over this many minutes.
PROGRESS_MINUTES = 15


def progress_minutes(now_ms: int) -> list[int]:
    """The minutes (since the epoch) whose terminal contacts make the rate: the current
    minute and the 14 before it (event time, as the stats window counts)."""
    current = now_ms // 60_000
    return list(range(current - PROGRESS_MINUTES + 1, current + 1))


def progress_view(batch_id: str, fields: Hash, became_terminal: int, now_ms: int) -> dict[str, Any]:
    """`GET /campaigns/{id}/batches/{batch_id}/progress` from the batch's hash and the
    contacts that became terminal in the last `PROGRESS_MINUTES` minutes."""
    total = fields.get("total")
    total_contacts = int(total) if total is not None else _int(fields, "known")
    done = sum(_int(fields, f"contacts:{s}") for s in TERMINAL_STATUSES)
    rate = became_terminal / PROGRESS_MINUTES
    eta = None
    if rate > 0 and done < total_contacts:
        finish = now_ms + round((total_contacts - done) / rate * 60_000)
        eta = datetime.fromtimestamp(finish / 1000, UTC).isoformat(timespec="seconds")
        eta = eta.replace("+00:00", "Z")
    return {
        "batch_id": batch_id,
        "total_contacts": total_contacts,
        "done": done,
        "rate_per_minute": rate,
        "eta": eta,
    }
