"""Reads: latency of the two endpoints at 1M and at 1k contacts, and the incumbent's
approach (recount from per-contact state on every request) as the reference."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import redis.asyncio as aioredis

from bench.harness import Figure, median, percentile
from processors.domain.transitions import unpack_contact, unpack_record
from processors.store.client import Store


def latencies(
    client: httpx.Client, paths: tuple[str, str], token: str, count: int
) -> tuple[list[float], list[float]]:
    """Sequential requests, alternating between two paths so drift hits both; ms each."""
    headers = {"Authorization": f"Bearer {token}"}
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(20):  # warm up
        for path in paths:
            client.get(path, headers=headers).raise_for_status()
    for _ in range(count):
        for path, into in zip(paths, samples, strict=True):
            started = time.perf_counter()
            response = client.get(path, headers=headers)
            into.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    return samples


async def incumbent_stats(redis_url: str, campaign_id: str) -> dict[str, Any]:
    """What the incumbent does per read: aggregate every contact and call record."""
    store = Store(aioredis.Redis.from_url(redis_url, decode_responses=True))
    try:
        counts: Counter[str] = Counter()
        contacts, records = await store.entity_states(campaign_id)
        for packed in contacts.values():
            contact = unpack_contact(packed)
            counts[f"contacts:{contact.status}"] += 1
            counts[f"batch:{contact.batch_id}:{contact.status}"] += 1
        for packed in records.values():
            counts[f"calls:{unpack_record(packed).status}"] += 1
        return dict(counts)
    finally:
        await store.close()


def run(
    api_url: str, token: str, redis_url: str, big: str, small: str, requests: int, recounts: int
) -> list[Figure]:
    """Read figures: O(1) in campaign size, and against the incumbent at the big size."""
    figures = []
    with httpx.Client(base_url=api_url, timeout=30) as client:
        for name, path in (("stats", "/stats"), ("batches?limit=50", "/batches?limit=50")):
            at_big, at_small = latencies(
                client,
                (f"/api/v1/campaigns/{big}{path}", f"/api/v1/campaigns/{small}{path}"),
                token,
                requests,
            )
            p50_big, p50_small = median(at_big), median(at_small)
            p99_big, p99_small = percentile(at_big, 99), percentile(at_small, 99)
            figures.append(
                Figure(
                    f"read {name}: p50 at the big campaign",
                    p50_big,
                    "ms",
                    p50_small,
                    "p50 at the 1k-contact campaign",
                    p50_big / p50_small,
                    "<= 1.2",
                    p50_big / p50_small <= 1.2,
                    f"p99 {p99_big:.2f} ms vs {p99_small:.2f} ms (ratio {p99_big / p99_small:.2f});"
                    f" {requests} sequential requests through HTTP",
                )
            )
    stats_p50 = figures[0].value
    samples = []
    for _ in range(recounts):
        started = time.perf_counter()
        asyncio.run(incumbent_stats(redis_url, big))
        samples.append((time.perf_counter() - started) * 1000)
    incumbent = median(samples)
    figures.append(
        Figure(
            "read stats vs the incumbent at the big campaign",
            stats_p50,
            "ms",
            incumbent,
            "recount from per-contact state per request (in process, no HTTP)",
            incumbent / stats_p50,
            ">= 100x faster",
            incumbent / stats_p50 >= 100,
            f"incumbent p50 of {recounts} recounts",
        )
    )
    return figures
