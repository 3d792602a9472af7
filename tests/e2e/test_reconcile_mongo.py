"""Reconciliation from the dialer's database (nx-27017): dual-write gaps found and repaired."""

from __future__ import annotations

import asyncio
import json
import re
from contextlib import suppress
from pathlib import Path
from typing import Any

import redis
from aiokafka import AIOKafkaConsumer
from pymongo import MongoClient

from processors.settings import Settings
from processors.store import keys
from processors.tools.embedded import EmbeddedInfra
from tests.conftest import wait_until
from tests.e2e.conftest import NxMongo, Proc, run_cli, token
from tests.e2e.test_pipeline import matches
from tests.oracle import ENTITY, Expected

COLLECTIONS = {
    "batches": "batch.upserted",
    "contacts": "contact.status_changed",
    "call_records": "call_record.completed",
}


def database_events(url: str, campaigns: list[str]) -> list[dict[str, Any]]:
    """The database's documents as the events they are the latest state of."""
    client: MongoClient[dict[str, Any]] = MongoClient(url)
    try:
        db = client.get_default_database()
        return [
            {**doc, "event_type": event_type}
            for name, event_type in COLLECTIONS.items()
            for doc in db[name].find({"campaign_id": {"$in": campaigns}})
        ]
    finally:
        client.close()


def published(bootstrap: str, settings: Settings, campaigns: set[str], count: int) -> list[Any]:
    """The events of the campaigns in the source topics, waiting until `count` are there."""

    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(
            *settings.source_topics,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        found: list[Any] = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while len(found) < count and loop.time() < deadline:
                for part in (await consumer.getmany(timeout_ms=500)).values():
                    for record in part:
                        # the session's topics also hold other tests' bad lines, framed
                        # values and tombstones: only this test's events count
                        if not record.value or not record.value.startswith(b"{"):
                            continue
                        with suppress(ValueError):
                            event = json.loads(record.value)
                            if isinstance(event, dict) and event.get("campaign_id") in campaigns:
                                found.append(event)
        finally:
            await consumer.stop()
        return found

    return asyncio.run(run())


def dropped_entities(truth: list[dict[str, Any]], sent: list[dict[str, Any]]) -> set[Any]:
    """Entities whose latest version in the database never reached Kafka."""
    best: dict[Any, int] = {}
    for event in sent:
        key = (event["event_type"], event[ENTITY[event["event_type"]]])
        best[key] = max(best.get(key, 0), event["version"])
    return {
        (doc["event_type"], doc[ENTITY[doc["event_type"]]])
        for doc in truth
        if best.get((doc["event_type"], doc[ENTITY[doc["event_type"]]]), 0) < doc["version"]
    }


def test_dual_write_gaps_are_found_and_repaired_from_the_database(
    infra: EmbeddedInfra, worker: Proc, api_url: str, mongo: NxMongo, tmp_path: Path
) -> None:
    """The simulator writes the database and loses 3 % of the events before Kafka; the
    stats follow Kafka, so they differ from the database; a reconcile from the database
    (while other traffic keeps flowing) repairs exactly the dropped entities and reports
    them, and the invalid documents, by id."""
    url = mongo.url("dialer_gaps")
    campaigns = [f"cmp_9100_{i}" for i in range(2)]
    done = run_cli(infra, "simulate", "--campaigns", "2", "--seed", "9100", "--rate", "3000",
                   "--limit", "3000", "--mongodb", url, "--drop-rate", "0.03")  # fmt: skip
    assert done.returncode == 0, done.stderr
    match = re.search(rb"dropped (\d+) of 3000 events", done.stderr)
    assert match, done.stderr
    dropped_events = int(match.group(1))
    assert dropped_events > 0

    settings = Settings()
    sent = published(infra.env["KAFKA_BOOTSTRAP_SERVERS"], settings, set(campaigns),
                     3000 - dropped_events)  # fmt: skip
    assert len(sent) == 3000 - dropped_events
    truth = database_events(url, campaigns)
    lost = dropped_entities(truth, sent)
    assert lost, "a 3 % drop rate over 3000 events loses some entity's latest version"

    from_kafka, from_db = Expected(sent), Expected(truth)
    tokens = {org: token(infra, org) for org in set(from_db.owner.values())}
    wait_until(lambda: matches(api_url, from_kafka, tokens), timeout=120,
               what="the worker to apply what reached Kafka")  # fmt: skip
    assert not matches(api_url, from_db, tokens)

    bad = MongoClient(url).get_default_database()
    org = from_db.owner[campaigns[0]]
    base = {"organization_id": org, "campaign_id": campaigns[0], "batch_id": "btc_bad",
            "retry_count": 0, "follow_up_count": 0}  # fmt: skip
    bad.contacts.insert_many([
        {**base, "_id": "con_bad_status", "status": "exploded", "version": 1},
        {**base, "_id": "con_bad_version", "status": "pending", "version": "two"},
        {**base, "_id": "con_bad_count", "status": "retrying", "retry_count": -1, "version": 3},
    ])  # fmt: skip
    bad.client.close()

    live = Proc(infra, tmp_path / "live.log", "simulate", "--campaigns", "1", "--seed", "9101",
                "--rate", "200", "--mongodb", url)  # fmt: skip
    client = redis.Redis.from_url(infra.valkey.url, decode_responses=True)

    def live_applied() -> int:
        return int(client.hget(keys.stats("cmp_9101_0"), "events:applied") or 0)

    try:
        wait_until(lambda: live_applied() > 200, timeout=60, what="live traffic to flow")
        before = live_applied()
        run = run_cli(infra, "reconcile", "--source", url, "--json")
        assert run.returncode == 0, run.stderr
        assert live_applied() > before and live.process.poll() is None
    finally:
        live.stop()

    report = json.loads(run.stdout)
    assert report["source"] == "mongodb"
    mine = {c["campaign_id"]: c for c in report["campaigns"] if c["campaign_id"] in campaigns}
    assert sorted(mine) == campaigns
    assert all(c["worker_caught_up"] and c["fields"] == [] for c in mine.values()), mine
    found = sum(c["entities_missing"] + c["entities_stale"] for c in mine.values())
    assert found == len(lost)
    assert sum(c["entities_extra"] for c in mine.values()) == 0
    invalid = {(d["id"], d["reason"]) for c in mine.values() for d in c["invalid_documents"]}
    assert {i for i, _ in invalid} == {"con_bad_status", "con_bad_version", "con_bad_count"}
    assert report["totals"]["invalid_documents"] >= 3

    wait_until(lambda: matches(api_url, from_db, tokens), timeout=30,
               what="the stats to equal the database")  # fmt: skip
    bad = keys.digest("con_bad_status")
    buckets = client.scan_iter(match=keys.contact_bucket(campaigns[0], 0)[:-1] + "*")
    assert not any(client.hexists(bucket, bad) for bucket in buckets)
    stored = httpx_json(api_url, f"/api/v1/campaigns/{campaigns[0]}/reconciliation", tokens[org])
    assert stored["source"] == "mongodb"
    assert {d["id"] for d in stored["invalid_documents"]} == {i for i, _ in invalid}
    assert (
        stored["entities_missing"] + stored["entities_stale"]
        == mine[campaigns[0]]["entities_missing"] + mine[campaigns[0]]["entities_stale"]
    )


def httpx_json(url: str, path: str, tok: str) -> Any:
    from tests.e2e.test_pipeline import api_get

    response = api_get(url, path, tok)
    assert response.status_code == 200, response.text
    return response.json()
