"""Random event streams for property and store tests (content is a function of
(entity, version), as in a real dialer, so that any delivery order has one right answer)."""

from __future__ import annotations

import json
import random
from typing import Any

from processors.domain.events import Event, parse
from tests.oracle import BATCH, CALL, CONTACT


def parsed(event: dict[str, Any]) -> Event:
    """The event a valid raw event parses to (a rejection fails the test)."""
    outcome = parse(json.dumps(event).encode())
    assert not hasattr(outcome, "reason"), outcome
    return outcome  # type: ignore[return-value]


SPELLINGS = [lambda s: s, str.upper, lambda s: s.replace("_", "-"), str.title]


def entity_event(
    campaign: str, org: str, kind: str, index: int, version: int, *, messy: int = 0
) -> dict[str, Any]:
    """The event for one (entity, version); deterministic in its arguments."""
    pick = random.Random(f"{campaign}/{kind}/{index}/{version}")
    spell = SPELLINGS[messy % len(SPELLINGS)]
    base: dict[str, Any] = {
        "event_id": f"evt_{campaign}_{kind}_{index}_{version}",
        "organization_id": org,
        "campaign_id": campaign,
        "occurred_at": f"2026-05-08T09:{version:02d}:{index % 60:02d}Z",
        "version": version,
    }
    if kind == "batch":
        return {
            **base,
            "event_type": "batch.upserted",
            "batch_id": f"btc_{index}",
            "status": spell(pick.choice(BATCH)),
            "total_contacts": pick.randint(0, 50),
            "created_at": f"2026-05-0{1 + index % 3}T08:00:00Z",
        }
    if kind == "contact":
        status = pick.choice(CONTACT)
        return {
            **base,
            "event_type": "contact.status_changed",
            "batch_id": f"btc_{index % 4}",
            "contact_id": f"con_{index}",
            "status": spell(status),
            "retry_count": pick.randint(0, 3),
            "follow_up_count": pick.randint(0, 1),
        }
    return {
        **base,
        "event_type": "call_record.completed",
        "batch_id": f"btc_{index % 4}",
        "contact_id": f"con_{index % 7}",
        "execution_id": f"exec_{index}",
        "call_status": spell(pick.choice(CALL)),
        "is_follow_up": pick.random() < 0.3,
        "retry_index": pick.randint(0, 3),
        "duration_seconds": round(pick.uniform(0, 100), 2),
    }


def random_stream(
    rng: random.Random, *, campaigns: int = 2, size: int = 120, duplicates: float = 0.2
) -> list[dict[str, Any]]:
    """A shuffled stream over a small universe, with duplicates and stale versions."""
    events = []
    for _ in range(size):
        c = rng.randrange(campaigns)
        kind = rng.choice(["batch", "contact", "contact", "contact", "record"])
        index = rng.randrange(3 if kind == "batch" else 12)
        version = rng.randint(1, 5)
        events.append(
            entity_event(f"cmp_{c}", f"org_{c % 2}", kind, index, version, messy=rng.randrange(4))
        )
    events += [dict(e) for e in rng.sample(events, int(len(events) * duplicates))]
    rng.shuffle(events)
    return events
