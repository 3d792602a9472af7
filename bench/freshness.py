"""Freshness: from produce to visible through the API, under steady background traffic.

The reference, in the same run: the same probes read by a plain `AIOKafkaConsumer` with the
worker's fetch wait and isolation (`getmany` in a loop, nothing applied), which is what the
broker and the client library alone cost from produce to a consumer's hands.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.harness import Figure, median, percentile
from processors import fetching
from processors.settings import Settings
from processors.tools.produce import route_raw
from processors.tools.simulate import Simulation

PROBE_CAMPAIGN = "cmp_probe"
PROBE_ORG = "org_probe"
WARM_UP_SECONDS = 3.0
#: Every probe on one partition (by this key), so applied in the order sent: the pending
#: count reaching n then means probes 1..n-1 are applied (spread by their contact ids, a
#: probe applied early would count one sent before it as seen).
PROBE_KEY = b"probe"


def probe_event(n: int) -> dict[str, Any]:
    """A new contact in the probe campaign: its pending count reaches n when it is applied."""
    return {
        "event_id": f"probe-{n}",
        "event_type": "contact.status_changed",
        "organization_id": PROBE_ORG,
        "campaign_id": PROBE_CAMPAIGN,
        "occurred_at": "2026-05-08T09:00:00Z",
        "version": 1,
        "batch_id": "btc_probe",
        "contact_id": f"probe_{n}",
        "status": "pending",
        "retry_count": 0,
        "follow_up_count": 0,
    }


def _probe_number(value: bytes) -> int | None:
    if b'"probe-' not in value:
        return None
    return int(json.loads(value)["event_id"].split("-", 1)[1])


async def measure(
    bootstrap: str, api_url: str, token: str, rate: float, seconds: float
) -> tuple[list[float], list[float], int]:
    """Latencies (ms) of probes sent every 100 ms while `rate` events/s flow: through the
    API, and to the plain consumer of the reference; and how many probes were sent. A
    probe not seen 30 s after the last was sent is left out, and the figure fails."""
    settings = Settings(kafka_bootstrap_servers=bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    await producer.start()
    plain = AIOKafkaConsumer(
        *settings.source_topics,  # the worker's fetches: every partition of the three
        bootstrap_servers=bootstrap,
        group_id=f"bench-freshness-reference-{uuid.uuid4().hex[:8]}",  # from the log end
        auto_offset_reset="latest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        isolation_level=fetching.ISOLATION_LEVEL,
    )
    try:
        await plain.start()
        return await _probe(producer, plain, settings, api_url, token, rate, seconds)
    finally:
        await producer.stop()
        await plain.stop()


async def _probe(
    producer: AIOKafkaProducer, plain: AIOKafkaConsumer, settings: Settings, api_url: str,
    token: str, rate: float, seconds: float,
) -> tuple[list[float], list[float], int]:  # fmt: skip
    sent: dict[int, float] = {}
    seen: dict[int, float] = {}
    reached: dict[int, float] = {}
    stop = asyncio.Event()

    async def send(event: dict[str, Any], key: bytes | None = None) -> None:
        message = route_raw(json.dumps(event).encode(), settings)
        await producer.send(message.topic, message.value, key=key or message.key)

    async def background() -> None:
        traffic = Simulation(campaigns=5, seed=99, prefix="fresh").events()
        started = time.perf_counter()
        for n, event in enumerate(traffic, start=1):
            if stop.is_set():
                return
            await send(event)
            ahead = n / rate - (time.perf_counter() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)

    async def probes() -> None:
        for n in itertools.count(1):
            if stop.is_set():
                return
            sent[n] = time.perf_counter()
            await send(probe_event(n), PROBE_KEY)
            await asyncio.sleep(0.1)

    async def poll(client: httpx.AsyncClient) -> None:
        etag = ""
        path = f"/api/v1/campaigns/{PROBE_CAMPAIGN}/stats"
        while not stop.is_set() or not sent.keys() <= seen.keys():
            response = await client.get(
                path, headers={"Authorization": f"Bearer {token}", "If-None-Match": etag}
            )
            now = time.perf_counter()
            if response.status_code == 200:
                etag = response.headers["etag"]
                count = response.json()["contact_counts"]["pending"]
                for n in range(1, count):  # probe 0 created the campaign
                    seen.setdefault(n, now)
            await asyncio.sleep(0.005)

    async def reference() -> None:
        while not stop.is_set() or not sent.keys() <= reached.keys():
            fetched = await plain.getmany(timeout_ms=100, max_records=20_000)
            now = time.perf_counter()
            for records in fetched.values():
                for record in records:
                    n = _probe_number(record.value)
                    if n is not None:
                        reached.setdefault(n, now)

    await send(probe_event(0), PROBE_KEY)  # creates the campaign
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.perf_counter() + 60
        while (
            await client.get(f"/api/v1/campaigns/{PROBE_CAMPAIGN}/stats", headers=headers)
        ).status_code != 200:
            if time.perf_counter() > deadline:
                raise RuntimeError("the probe campaign never appeared")
            await asyncio.sleep(0.05)
        # Steady state: the traffic runs a few seconds before the first probe, so that the
        # worker's once-per-assignment incarnation check of every partition is behind it.
        tasks = [asyncio.create_task(background())]
        await asyncio.sleep(WARM_UP_SECONDS)
        pollers = [asyncio.create_task(poll(client)), asyncio.create_task(reference())]
        tasks.append(asyncio.create_task(probes()))
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
        _, late = await asyncio.wait(pollers, timeout=30)
        for poller in late:  # a probe never seen: the figure says so and fails
            poller.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        for poller in pollers:
            if not poller.cancelled() and poller.exception() is not None:
                raise RuntimeError("a freshness poller failed") from poller.exception()
    return (
        [(seen[n] - sent[n]) * 1000 for n in sent if n in seen],
        [(reached[n] - sent[n]) * 1000 for n in sent if n in reached],
        len(sent),
    )


def run(bootstrap: str, api_url: str, token: str, rate: float, seconds: float) -> Figure:
    samples, plain, sent = asyncio.run(measure(bootstrap, api_url, token, rate, seconds))
    p50, p99 = median(samples), percentile(samples, 99)
    plain_p99 = percentile(plain, 99)
    return Figure(
        f"freshness at {rate:,.0f} events/s: p99 produce -> API",
        p99,
        "ms",
        plain_p99,
        "p99 produce -> a plain consumer (the broker's floor)",
        p99 / plain_p99,
        "p99 <= 100 ms, every probe seen",
        p99 <= 100 and len(samples) == sent,
        f"p50 {p50:.0f} ms over {len(samples)} of {sent} probes after a"
        f" {WARM_UP_SECONDS:.0f} s warm-up (API polled every 5 ms with ETags); the plain"
        f" consumer (all three topics, stock aiokafka fetcher): p50 {median(plain):.0f} ms,"
        f" p99 {plain_p99:.0f} ms over {len(plain)} probes",
    )
