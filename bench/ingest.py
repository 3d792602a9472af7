"""Ingest: one worker draining a pre-loaded backlog, against a plain consumer and a naive
one-round-trip-per-event implementation measured in the same run; the same drain from a
zstd-compressed log against the uncompressed one."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from bench.harness import Child, Figure, cpu_seconds, progress, publish_all
from processors.domain.events import parse
from processors.settings import Settings
from processors.store import keys
from processors.store.client import Store
from processors.store.slices import group
from processors.tools.embedded import EmbeddedInfra, create_topics
from processors.tools.produce import route_raw
from processors.tools.simulate import Simulation


def backlog(size: int) -> tuple[list[dict[str, Any]], int]:
    """Mixed simulator traffic over 50 campaigns; also how many distinct contacts."""
    simulation = Simulation(campaigns=50, organizations=10, seed=11, new_batch_rate=0.02)
    events = list(itertools.islice(simulation.events(), size))
    contacts = len({e["contact_id"] for e in events if "contact_id" in e})
    return events, contacts


async def plain_consumer(
    bootstrap: str, topics: tuple[str, ...], total: int, group: str = "bench"
) -> float:
    """The reference: AIOKafkaConsumer.getmany + json.loads, nothing else (reading from the
    start: it commits nothing)."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"{group}-plain",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen, started = 0, 0.0
    try:
        while seen < total:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=20000)
            if fetched and not started:
                started = time.perf_counter()
            for records in fetched.values():
                for record in records:
                    json.loads(record.value)
                    seen += 1
    finally:
        await consumer.stop()
    return seen / (time.perf_counter() - started)


async def naive(redis_url: str, lines: list[bytes]) -> float:
    """The naive reference: one script call, one round trip, per event."""
    store = Store(aioredis.Redis.from_url(redis_url, decode_responses=True))
    await store.client.flushdb()
    epochs: defaultdict[tuple[str, int], int] = defaultdict(lambda: 1)
    started = time.perf_counter()
    for offset, line in enumerate(lines):
        event = parse(line)
        assert not hasattr(event, "reason")
        await store.apply(group([("naive", 0, offset, event)]), epochs)
    rate = len(lines) / (time.perf_counter() - started)
    await store.client.flushdb()
    await store.close()
    return rate


def restart_catch_up(
    infra: EmbeddedInfra, workdir: Path, client: Any, backlog_done: Any, drain_seconds: float
) -> Figure:
    """A successor after a graceful stop: 1,000 new events wait behind the drained log.
    Time from its first fetch to having applied them, against the first full drain."""
    settings = Settings(kafka_bootstrap_servers=infra.broker.bootstrap)
    simulation = Simulation(campaigns=5, organizations=1, seed=3, prefix="restart_")
    fresh = list(itertools.islice(simulation.events(), 1000))
    asyncio.run(
        publish_all(
            infra.broker.bootstrap, [route_raw(json.dumps(e).encode(), settings) for e in fresh]
        )
    )
    fresh_keys = sorted({keys.stats(e["campaign_id"]) for e in fresh})

    def fresh_done() -> int:
        total = 0
        for key in fresh_keys:
            total += sum(int(v or 0) for v in client.hmget(key, "events:applied", "events:stale"))
        return total

    before = backlog_done()
    worker = Child(infra, workdir / "restart-worker.log", "worker", "--loglevel", "warning")
    try:
        while backlog_done() == before and fresh_done() == 0:
            time.sleep(0.005)  # the first fetch applied something: the member has joined
        started = time.perf_counter()
        while fresh_done() < len(fresh):
            time.sleep(0.005)
        seconds = time.perf_counter() - started
    finally:
        worker.stop()
    replayed = backlog_done() - before
    return Figure(
        "restart catch-up after a graceful stop",
        seconds,
        "s",
        drain_seconds,
        "s for the first full drain",
        seconds / drain_seconds,
        "<= 0.02x",
        seconds / drain_seconds <= 0.02,
        f"{replayed:,} events of the drained log re-read (committed offsets: 0 expected);"
        " group join excluded from both",
    )


def _own_topics(prefix: str, group: str) -> dict[str, str]:
    """Environment for a worker on topics (and a consumer group) of its own."""
    return {
        "DIALER_STATS_TOPIC_BATCHES": f"{prefix}.batches",
        "DIALER_STATS_TOPIC_CONTACTS": f"{prefix}.contacts",
        "DIALER_STATS_TOPIC_CALL_RECORDS": f"{prefix}.call_records",
        "DIALER_STATS_TOPIC_DEAD_LETTER": f"{prefix}.dead_letter",
        "DIALER_STATS_CONSUMER_GROUP": group,
    }


def _settings_for(bootstrap: str, env: dict[str, str]) -> Settings:
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_batches=env["DIALER_STATS_TOPIC_BATCHES"],
        topic_contacts=env["DIALER_STATS_TOPIC_CONTACTS"],
        topic_call_records=env["DIALER_STATS_TOPIC_CALL_RECORDS"],
        topic_dead_letter=env["DIALER_STATS_TOPIC_DEAD_LETTER"],
    )


def own_drain(
    infra: EmbeddedInfra, workdir: Path, events: list[dict[str, Any]], prefix: str,
    console: Any, *, compression: str | None = None, repeats: int = 1,
) -> tuple[float, float, float]:  # fmt: skip
    """A drain on topics of its own, into an emptied Redis: (worker events/s, worker CPU us
    per event, plain consumer events/s on the same topics). With `repeats`, the log is
    loaded once and drained that many times (each time by a plain consumer, then by a
    worker in a consumer group of its own); the run of the median ratio is returned (a
    short drain is a second or two, and one of them says little)."""
    settings = _settings_for(infra.broker.bootstrap, _own_topics(prefix, f"bench-{prefix}"))
    asyncio.run(create_topics(infra.broker.bootstrap, settings.all_topics, 6))
    messages = [route_raw(json.dumps(e).encode(), settings) for e in events]
    with progress(console) as bar:
        task = bar.add_task(f"loading {len(events):,} events ({prefix})", total=len(events))
        asyncio.run(
            publish_all(
                infra.broker.bootstrap, messages, lambda n: bar.advance(task, n),
                compression=compression,
            )
        )  # fmt: skip
    runs = []
    for n in range(repeats):
        group = f"bench-{prefix}-{n}"  # each drain reads the log from its start
        plain = asyncio.run(
            plain_consumer(infra.broker.bootstrap, settings.source_topics, len(events), group)
        )
        env = _own_topics(prefix, group)
        rate, cpu_us = _worker_drain(infra, workdir / f"{group}-worker.log", events, env)
        runs.append((rate, cpu_us, plain))
    runs.sort(key=lambda run: run[0] / run[2])
    return runs[len(runs) // 2]


def _worker_drain(
    infra: EmbeddedInfra, log: Path, events: list[dict[str, Any]], env: dict[str, str]
) -> tuple[float, float]:
    """One worker draining the topics `env` names into an emptied Redis: events/s and
    worker CPU us per event, from its first applied event on."""
    client = redis.Redis.from_url(infra.valkey.url, decode_responses=True)
    client.flushdb()  # the drain applies everything afresh
    stats_keys = sorted({keys.stats(e["campaign_id"]) for e in events})

    def done() -> int:
        return sum(
            int(v or 0)
            for key in stats_keys
            for v in client.hmget(key, "events:applied", "events:stale", "events:replayed")
        )

    worker = Child(infra, log, "worker", "--loglevel", "warning", **env)
    try:
        first = 0
        while first == 0:
            first = done()
            time.sleep(0.02)
        started, cpu = time.perf_counter(), worker.cpu_seconds()
        while done() < len(events):
            time.sleep(0.02)
        # a small drain may be done at the first look: count at least one event
        rest = max(len(events) - first, 1)
        rate = rest / max(time.perf_counter() - started, 1e-6)
        cpu_us = (worker.cpu_seconds() - cpu) / rest * 1e6
    finally:
        worker.stop()
    client.flushdb()
    return rate, cpu_us


#: Events of the compressed log (the full run's backlog is larger; the rate is steady).
COMPRESSED_MAX = 300_000


def compressed_drain(
    infra: EmbeddedInfra, workdir: Path, events: list[dict[str, Any]], reference: float,
    reference_cpu_us: float, console: Any,
) -> Figure:  # fmt: skip
    """The same drain from a log of zstd-compressed batches (what librdkafka producers with
    `compression.type=zstd` write). The worker's CPU time per event is noted too: unlike
    the rate, it hardly moves when other processes share the cores."""
    rate, cpu_us, _ = own_drain(infra, workdir, events, "zstd", console, compression="zstd")
    return Figure(
        "ingest from a zstd-compressed log",
        rate,
        "events/s",
        reference,
        "the same worker on the uncompressed log",
        rate / reference,
        "",
        None,
        f"{len(events):,} events in zstd batches (producer linger 20 ms, batches up to 512 KiB);"
        f" worker CPU {cpu_us:.1f} us/event vs {reference_cpu_us:.1f} uncompressed"
        f" ({cpu_us / reference_cpu_us:.2f}x)",
    )


def run(infra: EmbeddedInfra, workdir: Path, size: int, console: Any) -> tuple[list[Figure], float]:
    """The ingest figures and the worker's events per second."""
    settings = Settings(kafka_bootstrap_servers=infra.broker.bootstrap)
    events, contacts = backlog(size)
    small = max(size // 10, 1000)
    small_rate, _, small_plain = own_drain(
        infra, workdir, events[:small], "small", console, repeats=3
    )
    messages = [route_raw(json.dumps(e).encode(), settings) for e in events]
    with progress(console) as bar:
        task = bar.add_task(f"loading {size:,} events into the broker", total=size)
        asyncio.run(publish_all(infra.broker.bootstrap, messages, lambda n: bar.advance(task, n)))
    plain = asyncio.run(plain_consumer(infra.broker.bootstrap, settings.source_topics, size))

    client = redis.Redis.from_url(infra.valkey.url, decode_responses=True)
    stats_keys = sorted({keys.stats(e["campaign_id"]) for e in events})

    def done() -> int:
        total = 0
        for key in stats_keys:
            tallies = client.hmget(key, "events:applied", "events:stale", "events:replayed")
            total += sum(int(v or 0) for v in tallies)
        return total

    worker = Child(infra, workdir / "ingest-worker.log", "worker", "--loglevel", "warning")
    pids = {"valkey": infra.valkey.process.pid, "broker": infra.broker.process.pid}  # type: ignore[union-attr]
    try:
        with progress(console) as bar:
            task = bar.add_task("one worker draining the backlog", total=size)
            first = 0
            while first == 0:
                first = done()
                time.sleep(0.02)
            started = time.perf_counter()
            cpu = {"worker": worker.cpu_seconds()} | {k: cpu_seconds(p) for k, p in pids.items()}
            current = first
            while current < size:
                time.sleep(0.05)
                current = done()
                bar.update(task, completed=current)
            elapsed = time.perf_counter() - started
            used = {"worker": worker.cpu_seconds() - cpu["worker"]}
            used |= {k: cpu_seconds(p) - cpu[k] for k, p in pids.items()}
    finally:
        worker.stop()  # SIGTERM: a graceful stop commits what was applied
    catch_up = restart_catch_up(infra, workdir, client, done, elapsed)
    rate = (size - first) / elapsed
    naive_lines = [json.dumps(e).encode() for e in events[: min(size, 20_000)]]
    naive_rate = asyncio.run(naive(infra.valkey.url.rsplit("/", 1)[0] + "/1", naive_lines))
    cpu_us = used["worker"] / (size - first) * 1e6
    zstd = compressed_drain(infra, workdir, events[:COMPRESSED_MAX], rate, cpu_us, console)
    share = ", ".join(f"{k} {v / elapsed:.0%}" for k, v in used.items())
    per_million = {k: v / (size - first) * 1e6 for k, v in used.items()}
    ratio, small_ratio = rate / plain, small_rate / small_plain
    flatness = max(ratio, small_ratio) / min(ratio, small_ratio)
    return [
        Figure(
            "ingest: one worker draining a backlog",
            rate,
            "events/s",
            plain,
            "plain AIOKafkaConsumer.getmany + json.loads",
            rate / plain,
            ">= 0.5x",
            rate / plain >= 0.5,
            f"{size:,} events, {contacts:,} contacts, 50 campaigns; CPU: {share}",
        ),
        Figure(
            "ingest vs naive (one round trip per event)",
            rate,
            "events/s",
            naive_rate,
            "naive: one EVALSHA per event",
            rate / naive_rate,
            "",
            None,
            f"naive measured on {len(naive_lines):,} events",
        ),
        Figure(
            f"ingest flatness: ratio at {size:,} events vs at {small:,}",
            flatness,
            "x",
            small_ratio,
            f"ratio to the plain consumer at {small:,} events",
            flatness,
            "<= 1.25",
            flatness <= 1.25,
            f"{ratio:.3f}x at {size:,} ({rate:,.0f}/s vs {plain:,.0f}/s),"
            f" {small_ratio:.3f}x at {small:,} ({small_rate:,.0f}/s vs {small_plain:,.0f}/s;"
            " the median of three drains)",
        ),
        Figure(
            "ingest CPU per million events (sizing)",
            per_million["worker"],
            "CPU-s (worker)",
            None,
            "",
            None,
            "",
            None,
            ", ".join(f"{k} {v:.1f} CPU-s ({v:.1f} us/event)" for k, v in per_million.items())
            + f" over the {size:,}-event drain",
        ),
        catch_up,
        zstd,
    ], rate
