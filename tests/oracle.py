"""An independent oracle: expected API responses computed directly from event dicts.

Deliberately simple and separate from the code under test: drop other organizations'
events, keep the highest version of each entity, then count. A contact is in the batch its
highest version names (batch moves need nothing more); a batch exists if it was upserted or
a contact is in it. It knows nothing of Redis, Lua or the incremental model.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

CONTACT = [
    "pending", "dispatched", "in_progress", "retrying", "completed", "failed", "busy",
    "no_answer", "skipped", "followup_scheduled", "max_retries_reached",
]  # fmt: skip
BATCH = ["pending", "in_progress", "paused", "completed", "cancelled", "expired"]
CALL = ["completed", "failed", "busy", "no_answer"]
BATCH_COUNTERS = [
    ("pending", "pending"), ("dispatched", "dispatched"), ("in_flight", "in_progress"),
    ("retrying", "retrying"), ("completed", "completed"), ("failed", "failed"),
    ("busy", "busy"), ("no_answer", "no_answer"), ("skipped", "skipped"),
    ("followup_scheduled", "followup_scheduled"), ("max_retries_reached", "max_retries_reached"),
]  # fmt: skip

ENTITY = {
    "batch.upserted": "batch_id",
    "contact.status_changed": "contact_id",
    "call_record.completed": "execution_id",
}


def norm(status: str) -> str:
    return status.lower().replace("-", "_")


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def latest(events: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(campaign, event_type, entity id) -> the event with the highest version."""
    best: dict[tuple[str, str, str], dict[str, Any]] = {}
    for event in events:
        key = (event["campaign_id"], event["event_type"], event[ENTITY[event["event_type"]]])
        if key not in best or event["version"] > best[key]["version"]:
            best[key] = event
    return best


class Expected:
    """Expected stats and batch lists of every campaign in a stream of valid events.

    The organization of a campaign's first event in the list owns it; the events of other
    organizations for it count for nothing (tenant mismatches).
    """

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.owner: dict[str, str] = {}
        for event in events:
            self.owner.setdefault(event["campaign_id"], event["organization_id"])
        own = [e for e in events if e["organization_id"] == self.owner[e["campaign_id"]]]
        self.top = latest(own)
        self.campaigns = sorted(self.owner)

    def _of(self, campaign: str, event_type: str) -> list[dict[str, Any]]:
        return [e for (c, t, _), e in self.top.items() if c == campaign and t == event_type]

    def stats(self, campaign: str) -> dict[str, Any]:
        contacts = self._of(campaign, "contact.status_changed")
        records = self._of(campaign, "call_record.completed")
        counts = {s: 0 for s in CONTACT}
        retry: dict[int, int] = {}
        for c in contacts:
            counts[norm(c["status"])] += 1
            if norm(c["status"]) == "retrying":
                retry[c["retry_count"]] = retry.get(c["retry_count"], 0) + 1
        batch_counts = {s: 0 for s in BATCH}
        for b in self.batches(campaign):
            batch_counts[b["status"]] += 1
        calls = {f"{s}_calls": 0 for s in CALL}
        follow_ups = 0
        for r in records:
            calls[f"{norm(r['call_status'])}_calls"] += 1
            follow_ups += 1 if r["is_follow_up"] else 0
        calls["follow_up_calls"] = follow_ups
        return {
            "campaign_id": campaign,
            "contact_counts": counts,
            "batch_counts": batch_counts,
            "call_counters": calls,
            "retry_breakdown": {f"retry_{n}": retry[n] for n in sorted(retry)},
            "in_flight_contacts": counts["dispatched"]
            + counts["in_progress"]
            + counts["retrying"]
            + counts["followup_scheduled"],
            "total_call_attempts": len(records),
            "follow_up_attempts": follow_ups,
        }

    def org_stats(self, org: str) -> dict[str, Any]:
        """`GET /api/v1/stats`: the stats bodies of the organization's campaigns added up
        field by field."""
        bodies = [self.stats(c) for c in self.campaigns if self.owner[c] == org]
        out: dict[str, Any] = {"organization_id": org, "campaigns": len(bodies)}
        template = self.stats("") if not bodies else bodies[0]
        for name in ("contact_counts", "batch_counts", "call_counters"):
            out[name] = {k: sum(body[name][k] for body in bodies) for k in template[name]}
        retries: dict[str, int] = {}
        for body in bodies:
            for k, n in body["retry_breakdown"].items():
                retries[k] = retries.get(k, 0) + n
        out["retry_breakdown"] = {
            k: retries[k] for k in sorted(retries, key=lambda k: int(k.split("_")[1])) if retries[k]
        }
        for name in ("in_flight_contacts", "total_call_attempts", "follow_up_attempts"):
            out[name] = sum(body[name] for body in bodies)
        return out

    def batches(self, campaign: str) -> list[dict[str, Any]]:
        contacts = self._of(campaign, "contact.status_changed")
        upserts = {b["batch_id"]: b for b in self._of(campaign, "batch.upserted")}
        ids = set(upserts) | {c["batch_id"] for c in contacts}
        rows = []
        for batch_id in ids:
            mine = [c for c in contacts if c["batch_id"] == batch_id]
            counters = {k: 0 for k, _ in BATCH_COUNTERS}
            retry: dict[int, int] = {}
            for c in mine:
                status = norm(c["status"])
                key = "in_flight" if status == "in_progress" else status
                counters[key] += 1
                if status == "retrying":
                    retry[c["retry_count"]] = retry.get(c["retry_count"], 0) + 1
            upsert = upserts.get(batch_id)
            created = _utc(upsert["created_at"]) if upsert else None
            rows.append(
                {
                    "batch_id": batch_id,
                    "campaign_id": campaign,
                    "status": norm(upsert["status"]) if upsert else "pending",
                    "total_contacts": upsert["total_contacts"] if upsert else len(mine),
                    "counters": counters,
                    "retry_breakdown": {f"retry_{n}": retry[n] for n in sorted(retry)},
                    "created_at": created,
                }
            )
        rows.sort(key=lambda r: (r["created_at"] is None, r["created_at"] or 0, r["batch_id"]))
        return rows


def comparable_batches(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """API batch rows with created_at parsed, so that equal instants compare equal."""
    return [
        {**row, "created_at": _utc(row["created_at"]) if row["created_at"] else None}
        for row in rows
    ]


def check_invariants(stats: dict[str, Any], batches: list[dict[str, Any]]) -> None:
    """The invariants of DESIGN section 3."""
    counts = stats["contact_counts"]
    assert sum(stats["retry_breakdown"].values()) == counts["retrying"]
    calls = stats["call_counters"]
    assert stats["total_call_attempts"] == sum(
        calls[f"{s}_calls"] for s in ("completed", "failed", "busy", "no_answer")
    )
    summed = {s: 0 for s in CONTACT}
    for batch in batches:
        for key, status in BATCH_COUNTERS:
            summed[status] += batch["counters"][key]
        assert sum(batch["retry_breakdown"].values()) == batch["counters"]["retrying"]
    assert summed == counts
