"""Reads: latency of the two endpoints at 1M and at 1k contacts, and the incumbent's
approach (recount from per-contact state on every request) as the reference; throughput of
one API process at 50 keep-alive clients against a bare ASGI app (`bench.reference_app`)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
import redis.asyncio as aioredis

from api.serve import default_workers
from bench import reference_app
from bench.harness import Child, Figure, cpu_seconds, median, percentile
from bench.load import Load, load
from processors.domain.transitions import unpack_contact, unpack_record
from processors.store import keys
from processors.store.client import Store
from processors.tools.embedded import EmbeddedInfra, free_port


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
        for name, path in (
            ("stats", "/stats"),
            ("batches?limit=50", "/batches?limit=50"),
            ("timeseries, 24 h at 1m (1,440 points)", "/timeseries?interval=1m"),
        ):
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
    figures.append(rollup(client_url=api_url, token=token, redis_url=redis_url, small=small,
                          requests=requests))  # fmt: skip
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


#: Campaigns of the organization in the rollup figure.
FLEET = 1000


def rollup(client_url: str, token: str, redis_url: str, small: str, requests: int) -> Figure:
    """GET /api/v1/stats over an organization of FLEET campaigns (the small one and copies of
    its stats hash, registered and announced as the worker does) against one campaign's
    stats, alternating; after a first read, nothing changes."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    fields: dict[str, str] = client.hgetall(keys.stats(small))  # type: ignore[assignment]
    org = fields["org"]
    copies = [f"{small}_fleet_{n}" for n in range(FLEET - 1)]
    pipe = client.pipeline(transaction=False)
    for campaign_id in copies:
        pipe.hset(keys.stats(campaign_id), mapping=fields)  # type: ignore[arg-type]
        pipe.sadd(keys.org_campaigns(org), campaign_id)
        pipe.hincrby(keys.org_changes(org), campaign_id, 1)
    pipe.hincrby(keys.org_changes(org), keys.CHANGES_SUM, 1)
    pipe.execute()
    try:
        with httpx.Client(base_url=client_url, timeout=30) as http:
            first = http.get("/api/v1/stats", headers={"Authorization": f"Bearer {token}"})
            campaigns = first.json()["campaigns"]
            at_org, at_one = latencies(
                http, ("/api/v1/stats", f"/api/v1/campaigns/{small}/stats"), token, requests
            )
    finally:
        pipe = client.pipeline(transaction=False)
        for campaign_id in copies:
            pipe.delete(keys.stats(campaign_id))
            pipe.srem(keys.org_campaigns(org), campaign_id)
            pipe.hdel(keys.org_changes(org), campaign_id)
        pipe.execute()
    ratio = median(at_org) / median(at_one)
    return Figure(
        f"read GET /api/v1/stats: p50 over {campaigns:,} campaigns",
        median(at_org),
        "ms",
        median(at_one),
        "p50 of one campaign's stats",
        ratio,
        "<= 2",
        ratio <= 2,
        f"p99 {percentile(at_org, 99):.2f} ms vs {percentile(at_one, 99):.2f} ms;"
        f" {requests} sequential requests through HTTP, alternating",
    )


@dataclass(frozen=True)
class Target:
    """One read measured against the bare reference app."""

    name: str
    path: str
    status: int
    target: float | None
    conditional: bool = False
    #: Revisions per second a writer process adds to the campaign meanwhile (0: none).
    changes: int = 0


TARGETS = (
    Target("GET /stats", "/stats", 200, 0.5),
    Target("GET /stats, 304 (If-None-Match)", "/stats", 304, 0.7, conditional=True),
    Target("GET /batches?limit=50", "/batches?limit=50", 200, 0.25),
    Target(
        "GET /batches?limit=50, campaign changing 500 times a second",
        "/batches?limit=50",
        200,
        0.5,
        changes=500,
    ),
)
HEALTHZ = Target("GET /healthz", "/healthz", 200, None)


@dataclass
class Side:
    """The runs of one server in a comparison, and its CPU time per request in each."""

    pid: int
    runs: list[Load] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)

    def run(self, url: str, headers: dict[str, str], status: int, requests: int) -> None:
        before = cpu_seconds(self.pid)
        self.runs.append(load(url, headers=headers, total=requests, status=status))
        self.cpu_us.append((cpu_seconds(self.pid) - before) / requests * 1e6)

    @property
    def rate(self) -> float:
        return median([run.rate for run in self.runs])

    def ratio(self, other: Side) -> float:
        """The median ratio of the paired runs' rates."""
        return median([a.rate / b.rate for a, b in zip(self.runs, other.runs, strict=True)])

    def note(self) -> str:
        latencies = [ms for run in self.runs for ms in run.latencies_ms]
        return (
            f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms,"
            f" {median(self.cpu_us):.0f} us CPU per request"
        )


def throughput(
    infra: EmbeddedInfra, workdir: Path, token: str, campaign_id: str, requests: int, rounds: int
) -> list[Figure]:
    """Requests per second of one API process at 50 keep-alive clients, each read beside
    the bare reference app (one HGETALL of the campaign's stats hash as JSON, same uvicorn):
    `rounds` pairs of runs, the reference first, the ratio of each pair, their median. Then
    /healthz, and the stats read with one process per core against one process."""
    key = keys.stats(campaign_id)
    fields = redis.Redis.from_url(infra.valkey.url).hlen(key)
    auth = {"Authorization": f"Bearer {token}"}
    figures = []
    api_port, reference_port = free_port(), free_port()
    api = Child(infra, workdir / "api-1.log", "api", "--port", str(api_port), "--workers", "1")
    try:
        with reference_app.serve(
            infra.valkey.url, key, reference_port, workdir / "reference.log"
        ) as reference:
            base = f"http://127.0.0.1:{api_port}"
            _wait_up(f"{base}/healthz")
            bare = f"http://127.0.0.1:{reference_port}/"
            url = f"{base}/api/v1/campaigns/{campaign_id}"
            etag = httpx.get(f"{url}/stats", headers=auth).headers["etag"]
            targets = [(t, url + t.path) for t in TARGETS] + [(HEALTHZ, f"{base}/healthz")]
            for target, target_url in targets:
                headers = {**auth, "If-None-Match": etag} if target.conditional else auth
                if target is HEALTHZ:
                    headers = {}
                load(target_url, headers=headers, total=300, status=target.status)  # warm up
                load(bare, total=300)
                ours, theirs = Side(api.process.pid), Side(reference.pid)
                for _ in range(rounds):
                    theirs.run(bare, {}, 200, requests)
                    with changing(infra.valkey.url, campaign_id, target.changes):
                        ours.run(target_url, headers, target.status, requests)
                ratio = ours.ratio(theirs)
                pairs = ", ".join(
                    f"{a.rate / b.rate:.2f}" for a, b in zip(ours.runs, theirs.runs, strict=True)
                )
                figures.append(
                    Figure(
                        f"read {target.name}: one API process, 50 keep-alive clients",
                        ours.rate,
                        "req/s",
                        theirs.rate,
                        "bare ASGI app: HGETALL + JSON",
                        ratio,
                        f">= {target.target}" if target.target else "",
                        ratio >= target.target if target.target else None,
                        f"{ours.note()}; reference {theirs.note()}; {rounds} x {requests}"
                        f" requests each, alternating, pair ratios {pairs}; the stats hash"
                        f" has {fields} fields",
                    )
                )
            figures.append(_scaling(infra, workdir, url + "/stats", auth, base, requests, rounds))
    finally:
        api.stop()
    return figures


def _scaling(
    infra: EmbeddedInfra,
    workdir: Path,
    stats_url: str,
    auth: dict[str, str],
    single: str,
    requests: int,
    rounds: int,
) -> Figure:
    """GET /stats from `api` with its default process count against one process."""
    workers = default_workers()
    port = free_port()
    many = Child(infra, workdir / "api-n.log", "api", "--port", str(port))
    try:
        _wait_up(f"http://127.0.0.1:{port}/healthz")
        many_url = stats_url.replace(single, f"http://127.0.0.1:{port}")
        load(many_url, headers=auth, total=300)
        ones, alls = [], []
        for _ in range(rounds):
            ones.append(load(stats_url, headers=auth, total=requests))
            alls.append(load(many_url, headers=auth, total=requests))
    finally:
        many.stop()
    ratio = median([a.rate / b.rate for a, b in zip(alls, ones, strict=True)])
    latencies = [ms for run in alls for ms in run.latencies_ms]
    return Figure(
        f"read GET /stats: api --workers {workers} (one per core), 50 keep-alive clients",
        median([a.rate for a in alls]),
        "req/s",
        median([b.rate for b in ones]),
        "one API process",
        ratio,
        "",
        None,
        f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms;"
        f" {os.cpu_count()} CPUs shared with valkey and the load generator",
    )


@contextmanager
def changing(redis_url: str, campaign_id: str, per_second: int) -> Iterator[None]:
    """A process changing the campaign `per_second` times a second as applied slices do:
    each change bumps the revision of the stats hash and alters one batch of the first
    page (its version, which no view shows, in turn through the page's batches), so reads
    keep finding a new revision and a page with a batch not seen before. The states are
    put back after."""
    if not per_second:
        yield
        return
    stop = multiprocessing.Event()
    writer = multiprocessing.Process(
        target=_change, args=(redis_url, campaign_id, per_second, stop)
    )
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join(timeout=10)


def _bumped(packed: str, by: int) -> str:
    """A batch's packed state with its version moved by `by` (no view shows the version)."""
    code, version, *rest = packed.split("|")
    return "|".join((code, str(int(version or 0) + by), *rest))


def _change(redis_url: str, campaign_id: str, per_second: int, stop: Any) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    stats, batches = keys.stats(campaign_id), keys.batches(campaign_id)
    first: list[str] = client.zrange(keys.batch_index(campaign_id), 0, 49)  # type: ignore[assignment]
    found: list[str | None] = client.hmget(batches, first)  # type: ignore[assignment]
    # the batches of the first page that are in the batches hash (the bench writes them so)
    listed = [b for b, state in zip(first, found, strict=True) if state]
    states = [state for state in found if state]
    tick = 0
    try:
        while not stop.wait(1 / per_second):
            n = tick % len(listed)
            pipe = client.pipeline(transaction=False)
            pipe.hincrby(stats, "rev", 1)
            pipe.hset(batches, listed[n], _bumped(states[n], tick // len(listed) + 1))
            pipe.execute()
            tick += 1
    finally:
        client.hset(batches, mapping=dict(zip(listed, states, strict=True)))


def _wait_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")
