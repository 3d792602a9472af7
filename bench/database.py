"""Reconciliation from the dialer's database: one campaign in nx-27017, an empty Redis, the
database reconciler (the path of `reconcile --source mongodb://...`) repairing everything,
against a plain pymongo cursor reading the same documents in the same run; the longest
Redis call meanwhile, from the server's SLOWLOG and a PING probe on another connection."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from bench import dataset
from bench.harness import Figure, progress
from processors.reconcile.cli import reconcile_once
from processors.reconcile.documents import KINDS, Kind, projection
from processors.reconcile.mongo import CURSOR_BATCH
from processors.settings import Settings
from processors.tools.dualwrite import document
from processors.tools.embedded import EmbeddedInfra
from processors.tools.nxmongo import NxMongo

CAMPAIGN = "cmp_db"
BATCHES = 10
#: Documents per insert_many.
CHUNK = 1000
#: Pause between two PINGs of the probe (s).
PROBE_GAP = 0.002


def load(url: str, contacts: int, console: Any) -> int:
    """The campaign's documents (batches, contacts, one call record each), indexed by
    campaign; returns how many."""
    from pymongo import ASCENDING, MongoClient

    settings = Settings()
    names: dict[Kind, str] = {
        "batches": settings.mongo_batches,
        "contacts": settings.mongo_contacts,
        "call_records": settings.mongo_call_records,
    }
    docs: dict[Kind, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for event in dataset.events(dataset.Campaign(CAMPAIGN, contacts, BATCHES), seed=7):
        kind, entity, fields = document(event)
        docs[kind].append({"_id": entity, **fields})
    total = sum(len(d) for d in docs.values())
    client: MongoClient[dict[str, Any]] = MongoClient(url)
    try:
        db = client.get_default_database()
        with progress(console) as bar:
            task = bar.add_task(f"inserting {total:,} documents", total=total)
            for kind in KINDS:
                db[names[kind]].create_index([("campaign_id", ASCENDING)])
                for start in range(0, len(docs[kind]), CHUNK):
                    part = docs[kind][start : start + CHUNK]
                    db[names[kind]].insert_many(part, ordered=False)
                    bar.advance(task, len(part))
    finally:
        client.close()
    return total


def plain_cursor(url: str) -> tuple[float, int]:
    """The reference: find() with the reconciler's filter and projection over the three
    collections, iterated, nothing else; (seconds, documents)."""
    from pymongo import MongoClient

    settings = Settings()
    names = (settings.mongo_batches, settings.mongo_contacts, settings.mongo_call_records)
    client: MongoClient[dict[str, Any]] = MongoClient(url, tz_aware=True)
    try:
        db = client.get_default_database()
        db.command("ping")
        seen = 0
        started = time.perf_counter()
        for kind, name in zip(KINDS, names, strict=True):
            for _ in db[name].find(
                {"campaign_id": CAMPAIGN}, projection(kind), batch_size=CURSOR_BATCH
            ):
                seen += 1
        return time.perf_counter() - started, seen
    finally:
        client.close()


def probe(redis_url: str) -> None:
    """PING from its own process and connection until stdin closes; prints the longest
    round trip (s) and the number of PINGs."""
    done = threading.Event()

    def wait_stdin() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    client = redis.Redis.from_url(redis_url)
    client.ping()
    print("ready", flush=True)
    worst, count = 0.0, 0
    while not done.is_set():
        started = time.perf_counter()
        client.ping()
        worst = max(worst, time.perf_counter() - started)
        count += 1
        time.sleep(PROBE_GAP)
    client.close()
    print(worst, count, flush=True)


def _name(command: str | bytes) -> str:
    text = command.decode(errors="replace") if isinstance(command, bytes) else command
    return text.split(" ", 1)[0].upper()


def run(infra: EmbeddedInfra, workdir: Path, contacts: int, console: Any) -> Figure:
    """Reconciliation from the database of `contacts` contacts, as contacts/s."""
    with NxMongo(workdir / "nx-27017") as mongo:
        url = mongo.url("dialer")
        documents = load(url, contacts, console)
        plain_before, seen = plain_cursor(url)
        assert seen == documents, (seen, documents)

        client = redis.Redis.from_url(infra.valkey.url, decode_responses=True)
        assert client.dbsize() == 0, "the reconcile starts from an empty Redis"
        client.config_set("slowlog-log-slower-than", 0)
        client.config_set("slowlog-max-len", 1_000_000)
        client.slowlog_reset()
        settings = Settings(
            kafka_bootstrap_servers=infra.broker.bootstrap,
            redis_url=infra.valkey.url,
            reconcile_source=url,
        )
        code = f"from bench.database import probe; probe({infra.valkey.url!r})"
        prober = subprocess.Popen(
            [sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert prober.stdin is not None and prober.stdout is not None
        assert prober.stdout.readline().strip() == "ready"  # pinging before the run starts
        try:
            started = time.perf_counter()
            report = asyncio.run(
                reconcile_once(settings, campaign=CAMPAIGN, dry_run=False, console=None)
            )
            seconds = time.perf_counter() - started
        finally:
            answer, _ = prober.communicate(timeout=30)  # closes stdin: the probe stops
        worst, count = answer.split()
        ping_max, pings = float(worst), int(count)
        slow = client.slowlog_get(-1)
        client.config_set("slowlog-log-slower-than", 10_000)
        client.config_set("slowlog-max-len", 128)
        plain_after, _ = plain_cursor(url)

    (campaign,) = report.campaigns
    repaired = campaign.entities_missing
    assert repaired == documents, (repaired, documents, campaign)
    assert report.events_read == documents, report.events_read
    longest = max(slow, key=lambda e: int(e["duration"]))
    calls = Counter(_name(e["command"]) for e in slow)
    calls.pop("PING", None)
    top = ", ".join(f"{n:,} {name}" for name, n in calls.most_common(3))
    rate = contacts / seconds
    plain = contacts / min(plain_before, plain_after)
    return Figure(
        f"reconciliation from MongoDB (nx-27017): one campaign of {contacts:,} contacts",
        rate,
        "contacts/s",
        plain,
        "plain pymongo find() cursor, same documents",
        rate / plain,
        ">= 0.5x",
        rate / plain >= 0.5,
        f"{documents:,} documents ({contacts:,} contacts, one call record each,"
        f" {BATCHES} batches) read, folded and all repaired into an empty Redis in"
        f" {seconds:.2f} s (reconcile_once, lock and connections included); plain cursor"
        f" {documents / plain_before:,.0f} docs/s before, {documents / plain_after:,.0f} after"
        f" (faster taken); longest Redis call {int(longest['duration']) / 1000:.1f} ms"
        f" ({_name(longest['command'])}; SLOWLOG: {sum(calls.values()):,} calls besides PING,"
        f" incl. inside scripts: {top}); max PING round trip from another connection"
        f" {ping_max * 1000:.1f} ms over {pings:,} pings",
    )
