"""A big and a small campaign, loaded into the broker (for reconciliation) and straight
into Redis through the apply script (for reads and memory)."""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import redis.asyncio as aioredis

from bench.harness import progress, publish_all
from processors.domain.contract import CALL_STATUSES, CONTACT_STATUSES
from processors.domain.events import Event, parse
from processors.settings import Settings
from processors.store.client import Store
from processors.store.slices import group
from processors.tools.produce import Outgoing, route_event

ORG = "org_bench"
START = datetime(2026, 5, 8, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    contacts: int
    batches: int


def events(campaign: Campaign, seed: int) -> Iterator[dict[str, Any]]:
    """Batches, then each contact in its latest state with one call record."""
    rng = random.Random(seed)
    cid = campaign.campaign_id
    # call records spread over the last 24 hours: the time-series reads have data
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    common = {"organization_id": ORG, "campaign_id": cid, "version": 1}
    for b in range(campaign.batches):
        yield {
            **common, "event_id": f"{cid}-b{b}", "event_type": "batch.upserted",
            "occurred_at": START.isoformat(), "batch_id": f"btc_{b}",
            "status": rng.choice(["in_progress", "completed", "paused"]),
            "total_contacts": campaign.contacts // campaign.batches,
            "created_at": (START + timedelta(minutes=b)).isoformat(),
        }  # fmt: skip
    for n in range(campaign.contacts):
        batch_id = f"btc_{n % campaign.batches}"
        status = rng.choice(CONTACT_STATUSES)
        yield {
            **common, "event_id": f"{cid}-c{n}", "event_type": "contact.status_changed",
            "occurred_at": START.isoformat(), "batch_id": batch_id, "contact_id": f"con_{n}",
            "status": status, "retry_count": rng.randint(1, 3) if status == "retrying" else 0,
            "follow_up_count": 0,
        }  # fmt: skip
        yield {
            **common, "event_id": f"{cid}-r{n}", "event_type": "call_record.completed",
            "occurred_at": (now - timedelta(seconds=rng.randrange(86_400))).isoformat(),
            "batch_id": batch_id, "contact_id": f"con_{n}",
            "execution_id": f"exec_{n}", "call_status": rng.choice(CALL_STATUSES),
            "is_follow_up": rng.random() < 0.1, "retry_index": 0,
            "duration_seconds": round(rng.uniform(0, 300), 1),
        }  # fmt: skip


def load(infra_bootstrap: str, redis_url: str, campaigns: list[Campaign], console: Any) -> int:
    """Publish every campaign's events and apply them to Redis; returns the event count."""
    settings = Settings(kafka_bootstrap_servers=infra_bootstrap)
    total = 0
    with progress(console) as bar:
        for n, campaign in enumerate(campaigns):
            lines = [json.dumps(e).encode() for e in events(campaign, seed=n)]
            total += len(lines)
            parsed: list[Event] = []
            for line in lines:
                event = parse(line)
                assert not hasattr(event, "reason"), event
                parsed.append(event)
            messages: list[Outgoing] = [
                route_event(e, line, settings) for e, line in zip(parsed, lines, strict=True)
            ]
            sending = bar.add_task(f"{campaign.campaign_id}: publishing", total=len(lines))
            asyncio.run(publish_all(infra_bootstrap, messages, partial(bar.advance, sending)))
            applying = bar.add_task(f"{campaign.campaign_id}: applying", total=len(lines))
            asyncio.run(_apply(redis_url, parsed, partial(bar.advance, applying)))
    return total


async def _apply(redis_url: str, parsed: list[Event], tick: Any) -> None:
    store = Store(aioredis.Redis.from_url(redis_url, decode_responses=True))
    epochs: defaultdict[tuple[str, int], int] = defaultdict(lambda: 1)
    try:
        chunk = 4000
        for start in range(0, len(parsed), chunk):
            part = parsed[start : start + chunk]
            log = [("dialer.contacts", (start + i) % 6, start + i, e) for i, e in enumerate(part)]
            await store.apply(group(log), epochs)
            tick(len(part))
    finally:
        await store.close()
