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


async def _listen(
    host: str, port: int, path: str, ready: asyncio.Semaphore, sent_at: list[float]
) -> float:
    """One stream client on a bare connection: after the snapshot, the milliseconds from
    the produce to the next event. (httpx costs about half a millisecond of this process's
    CPU per event and client: with a thousand clients the measure would be of the clients.)"""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        snapshot_seen = False
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("the stream ended")
            if b"id: " not in line:
                continue
            if not snapshot_seen:
                snapshot_seen = True
                ready.release()
            elif sent_at:
                return (time.perf_counter() - sent_at[0]) * 1000
    finally:
        writer.close()


async def measure(
    bootstrap: str, api_url: str, token: str, clients: int
) -> tuple[int, list[float]]:
    """(clients that got the pushed update, their latencies in ms)."""
    url = httpx.URL(api_url)
    path = f"/api/v1/campaigns/{PROBE_CAMPAIGN}/stats/stream?access_token={token}"
    ready = asyncio.Semaphore(0)
    sent_at: list[float] = []
    host, port = url.host, url.port or 80
    tasks = [asyncio.create_task(_listen(host, port, path, ready, sent_at)) for _ in range(clients)]
    try:
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
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    latencies = [o for o in outcomes if isinstance(o, float)]
    return len(latencies), latencies


def run(bootstrap: str, api_url: str, token: str, clients: int) -> list[Figure]:
    received, latencies = asyncio.run(measure(bootstrap, api_url, token, clients))
    p50 = median(latencies) if latencies else float("nan")
    p99 = percentile(latencies, 99) if latencies else float("nan")
    full = clients >= 1000
    return [
        Figure(
            f"push: concurrent stream clients on one API process ({clients} connected)",
            received,
            "clients updated",
            None,
            "",
            None,
            ">= 1,000 clients",
            received >= 1000 if full else None,
            "clients on bare connections in one process",
        ),
        Figure(
            f"push latency, produce -> every one of {clients} clients: p99",
            p99,
            "ms",
            None,
            "",
            None,
            "p99 <= 250 ms",
            p99 <= 250 if full else None,
            f"p50 {p50:.0f} ms; one update fanned out to every stream",
        ),
    ]
