"""Redis memory per contact across campaign sizes, and for a mixed fleet.

Each row starts from an empty Redis: campaigns are applied straight through the apply
script (no broker), each contact in four status versions with one call record, ids of
about twenty characters as a dialer makes them, ten batches per campaign. The figure is
`used_memory` after minus before, divided by the contacts.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from bench.harness import Figure, progress
from processors.domain.contract import CALL_STATUSES, CONTACT_STATUSES
from processors.domain.events import BatchUpserted, CallRecordCompleted, ContactStatusChanged, Event
from processors.store import keys
from processors.store.client import Store
from processors.store.slices import group

ORG = "org_memory"
START = datetime(2026, 5, 8, 9, 0, tzinfo=UTC)
VERSIONS = 4
BATCHES = 10
CHUNK = 4000

#: (label, campaign sizes) per row; the mixed fleet is 150 small campaigns and one of 50k.
FULL_ROWS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("100 contacts (40 campaigns)", (100,) * 40),
    ("1,000 contacts (5 campaigns)", (1_000,) * 5),
    ("10,000 contacts", (10_000,)),
    ("100,000 contacts", (100_000,)),
    ("1,000,000 contacts", (1_000_000,)),
)
QUICK_ROWS: tuple[tuple[str, tuple[int, ...]], ...] = FULL_ROWS[:3]
TARGET_SMALL, TARGET = 80.0, 64.0  # B per contact: at 100 contacts, from 1,000 on


def mixed_fleet(seed: int = 7) -> tuple[int, ...]:
    """150 campaigns of 100 to 2,000 contacts and one of 50,000."""
    rng = random.Random(seed)
    return (*(rng.randint(100, 2_000) for _ in range(150)), 50_000)


@dataclass(frozen=True)
class Row:
    label: str
    contacts: int
    bytes_per_contact: float
    seconds: float


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def campaign_events(campaign_id: str, contacts: int, rng: random.Random) -> Iterator[Event]:
    """Ten batches, then per contact its versions and one call record."""
    common: dict[str, Any] = {
        "organization_id": ORG,
        "campaign_id": campaign_id,
        "occurred_at": START,
    }
    batch_ids = [f"btc_{_hex(rng, 12)}" for _ in range(BATCHES)]
    for b, batch_id in enumerate(batch_ids):
        yield BatchUpserted(
            **common, event_id=f"e{b}", version=1, batch_id=batch_id, status="in_progress",
            total_contacts=contacts // BATCHES, created_at=START + timedelta(minutes=b),
        )  # fmt: skip
    for n in range(contacts):
        contact_id, batch_id = f"con_{_hex(rng, 16)}", batch_ids[n % BATCHES]
        for version in range(1, VERSIONS + 1):
            status = rng.choice(CONTACT_STATUSES)
            yield ContactStatusChanged(
                **common, event_id=f"c{n}.{version}", version=version, batch_id=batch_id,
                contact_id=contact_id, status=status,
                retry_count=rng.randint(1, 3) if status == "retrying" else 0, follow_up_count=0,
            )  # fmt: skip
        yield CallRecordCompleted(
            **common, event_id=f"r{n}", version=1, batch_id=batch_id, contact_id=contact_id,
            execution_id=f"exe_{_hex(rng, 16)}", call_status=rng.choice(CALL_STATUSES),
            is_follow_up=rng.random() < 0.1, retry_index=0,
        )  # fmt: skip


async def _used_memory(redis_url: str) -> int:
    """`used_memory` read on a connection of its own (a loading connection's query buffer
    holds the last big script call, which is not state)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        return int((await client.info("memory"))["used_memory"])
    finally:
        await client.aclose()


async def _measure(redis_url: str, label: str, sizes: tuple[int, ...], bar: Any) -> Row:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = Store(client)
    rng = random.Random(len(sizes) * 1_000_003 + sum(sizes))
    try:
        # warm up: the script cached and the server's one-off allocations made, then empty
        warm = [("dialer.contacts", 0, n, e) for n, e in enumerate(campaign_events("w", 5, rng))]
        await store.apply(group(warm), {("dialer.contacts", 0): 1})
        # lazy freeing would skew the baseline
        await client.execute_command("FLUSHALL", "SYNC")  # type: ignore[no-untyped-call]
        before = await _used_memory(redis_url)
        task = bar.add_task(label, total=sum(sizes))
        started = asyncio.get_running_loop().time()
        offset = 0
        for c, size in enumerate(sizes):
            pending: list[tuple[str, int, int, Event]] = []
            for event in campaign_events(f"cmp_{_hex(rng, 8)}_{c}", size, rng):
                pending.append(("dialer.contacts", 0, offset, event))
                offset += 1
                if len(pending) == CHUNK:
                    await store.apply(group(pending), {("dialer.contacts", 0): 1})
                    pending = []
            await store.apply(group(pending), {("dialer.contacts", 0): 1})
            bar.advance(task, size)
        seconds = asyncio.get_running_loop().time() - started
    finally:
        await store.close()
    after = await _used_memory(redis_url)
    return Row(label, sum(sizes), (after - before) / sum(sizes), seconds)


def table(redis_url: str, *, quick: bool, console: Any) -> list[Row]:
    """The memory table (each row on an emptied Redis)."""
    rows = QUICK_ROWS if quick else FULL_ROWS
    fleet = mixed_fleet()
    if quick:
        fleet = (*fleet[:50], 10_000)
    plan = [*rows, (f"mixed fleet ({len(fleet) - 1} small + one of {fleet[-1]:,})", fleet)]
    with progress(console) as bar:
        return [asyncio.run(_measure(redis_url, label, sizes, bar)) for label, sizes in plan]


def figures(rows: list[Row]) -> list[Figure]:
    """One figure per row, against the target for its size."""
    out = []
    for row in rows:
        target = TARGET_SMALL if row.contacts <= 4_000 and "100 contacts" in row.label else TARGET
        out.append(
            Figure(
                f"Redis memory per contact: {row.label}",
                row.bytes_per_contact,
                "B",
                None,
                "",
                None,
                f"<= {target:.0f} B",
                row.bytes_per_contact <= target,
                f"{row.contacts:,} contacts, 4 versions and 1 call record each, ~20-character"
                f" ids, 10 batches per campaign (used_memory delta; loaded in {row.seconds:.0f} s)",
            )
        )
    return out


def series_day(redis_url: str) -> Figure:
    """Redis memory of one campaign-day of time series at one call per second."""
    size, count = asyncio.run(_series(redis_url, 86_400, 1, "cmp_series_day"))
    return Figure(
        "time series: Redis memory per campaign-day at one call per second",
        size / 1024,
        "KiB",
        None,
        "",
        None,
        "",
        None,
        f"86,400 call records over 24 h: {count} keys (1,440 minute buckets in 24-25 hourly"
        " hashes, 96 quarter-hour buckets in 1-2 daily hashes, the index); MEMORY USAGE;"
        " kept 49 h (minutes) and 401 days (quarter hours)",
    )


def series_year(redis_url: str) -> Figure:
    """Redis memory of one campaign-year of time series: a call record every quarter hour
    fills every bucket the year keeps (more calls change only the numbers)."""
    records = 365 * 96
    size, count = asyncio.run(_series(redis_url, records, 900, "cmp_series_year"))
    return Figure(
        "time series: Redis memory per campaign-year (every quarter hour of 365 days)",
        size / 1024,
        "KiB",
        None,
        "",
        None,
        "",
        None,
        f"{records:,} call records, one per quarter hour over the last 365 days: {count} keys"
        " (365-366 daily hashes of quarter hours, the last 49 h of minutes, the index);"
        " MEMORY USAGE",
    )


async def _series(redis_url: str, records: int, every: int, cid: str) -> tuple[int, int]:
    """`records` call records `every` seconds up to now: bytes of the campaign's
    time-series keys (MEMORY USAGE) and how many there are."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = Store(client)
    rng = random.Random(records)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        pending: list[tuple[str, int, int, Event]] = []
        for n in range(records):
            at = now - timedelta(seconds=(records - n) * every)
            event = CallRecordCompleted(
                organization_id=ORG, campaign_id=cid, occurred_at=at, event_id=f"s{n}",
                version=1, batch_id="btc_1", contact_id=f"con_{n}", execution_id=f"exe_{n}",
                call_status=rng.choice(CALL_STATUSES), is_follow_up=rng.random() < 0.1,
                retry_index=0, duration_seconds=round(rng.uniform(0, 300), 1),
            )  # fmt: skip
            pending.append(("dialer.call_records", 0, n, event))
            if len(pending) == CHUNK:
                await store.apply(group(pending), {("dialer.call_records", 0): 1})
                pending = []
        await store.apply(group(pending), {("dialer.call_records", 0): 1})
        # `t*`: the minute and quarter-hour hashes (tm:, tq:) and the index (ts), once each
        names = {
            key
            async for key in client.scan_iter(match=f"{keys.series_index(cid)[:-2]}t*", count=1000)
        }
        sizes = [await client.memory_usage(name, samples=0) or 0 for name in names]
        return sum(sizes), len(names)
    finally:
        await client.delete(*[k async for k in client.scan_iter(match=f"*{{{cid}}}*")])
        await store.close()
