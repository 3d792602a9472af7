"""Reconciliation from the dialer's database: one campaign in nx-27017, an empty Redis, the
database reconciler (the path of `reconcile --source mongodb://...`) repairing everything,
against a plain pymongo cursor reading the same documents in the same run; the longest
Redis call meanwhile, from the server's SLOWLOG and a PING probe on another connection."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import redis

from bench import dataset, latency
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


def run(infra: EmbeddedInfra, workdir: Path, contacts: int, console: Any) -> Figure:
    """Reconciliation from the database of `contacts` contacts, as contacts/s."""
    with NxMongo(workdir / "nx-27017") as mongo:
        url = mongo.url("dialer")
        documents = load(url, contacts, console)
        plain_before, read = plain_cursor(url)
        assert read == documents, (read, documents)

        client = redis.Redis.from_url(infra.valkey.url, decode_responses=True)
        assert client.dbsize() == 0, "the reconcile starts from an empty Redis"
        settings = Settings(
            kafka_bootstrap_servers=infra.broker.bootstrap,
            redis_url=infra.valkey.url,
            reconcile_source=url,
        )
        with latency.watch(infra.valkey.url) as redis_calls:
            started = time.perf_counter()
            report = asyncio.run(
                reconcile_once(settings, campaign=CAMPAIGN, dry_run=False, console=None)
            )
            seconds = time.perf_counter() - started
        plain_after, _ = plain_cursor(url)

    (campaign,) = report.campaigns
    repaired = campaign.entities_missing
    assert repaired == documents, (repaired, documents, campaign)
    assert report.events_read == documents, report.events_read
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
        f" (faster taken); {redis_calls.describe()}",
    )
