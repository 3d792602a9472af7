"""Push: many concurrent stream clients on one API process, and the push latency."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from aiokafka import AIOKafkaProducer

from bench.freshness import PROBE_CAMPAIGN, probe_event
from bench.harness import Figure, median, percentile
from processors.settings import Settings
from processors.tools.produce import route_raw


async def measure(
    bootstrap: str, api_url: str, token: str, clients: int
) -> tuple[int, list[float]]:
    """(clients that got the pushed update, their latencies in ms)."""
    url = f"{api_url}/api/v1/campaigns/{PROBE_CAMPAIGN}/stats/stream?access_token={token}"
    ready = asyncio.Semaphore(0)
    sent_at: list[float] = []
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(10, read=60)

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:

        async def listen() -> None:
            snapshot_seen = False
            async with client.stream("GET", url) as response:
                async for line in response.aiter_lines():
                    if not line.startswith("id: "):
                        continue
                    if not snapshot_seen:
                        snapshot_seen = True
                        ready.release()
                    elif sent_at:
                        latencies.append((time.perf_counter() - sent_at[0]) * 1000)
                        return

        tasks = [asyncio.create_task(listen()) for _ in range(clients)]
        for _ in range(clients):
            await asyncio.wait_for(ready.acquire(), timeout=120)
        settings = Settings(kafka_bootstrap_servers=bootstrap)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        await producer.start()
        message = route_raw(json.dumps(probe_event(10**9)).encode(), settings)
        sent_at.append(time.perf_counter())
        await producer.send_and_wait(message.topic, message.value, key=message.key)
        await producer.stop()
        await asyncio.wait(tasks, timeout=60)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return len(latencies), latencies


def run(bootstrap: str, api_url: str, token: str, clients: int) -> Figure:
    received, latencies = asyncio.run(measure(bootstrap, api_url, token, clients))
    p50 = median(latencies) if latencies else float("nan")
    p99 = percentile(latencies, 99) if latencies else float("nan")
    return Figure(
        f"push: concurrent stream clients on one API process ({clients} connected)",
        received,
        "clients updated",
        None,
        "",
        None,
        ">= 1,000 clients",
        received >= 1000 if clients >= 1000 else None,
        f"push latency produce -> every client: p50 {p50:.0f} ms, p99 {p99:.0f} ms",
    )
