"""Reconciliation on the running system: drift repaired while a producer keeps sending."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from pathlib import Path
from typing import Any

import redis

from processors import metrics
from processors.reconcile.cli import reconcile_once
from processors.settings import Settings
from processors.store import keys
from processors.tools.embedded import EmbeddedInfra
from processors.tools.simulate import Simulation
from tests.conftest import wait_until
from tests.e2e.conftest import Proc, run_cli, token
from tests.e2e.test_pipeline import api_get, matches
from tests.e2e.test_pipeline import assert_exact as pipeline_exact
from tests.oracle import Expected


def produce_chunks(
    infra: EmbeddedInfra,
    folder: Path,
    chunks: list[list[dict[str, Any]]],
    after: dict[int, threading.Event],
) -> None:
    """Publish chunk after chunk; `after[n]` is set once chunk n is out."""
    for n, chunk in enumerate(chunks):
        path = folder / f"chunk-{n}.jsonl"
        path.write_text("\n".join(json.dumps(e) for e in chunk) + "\n")
        done = run_cli(infra, "produce", str(path))
        assert done.returncode == 0, done.stderr
        if n in after:
            after[n].set()


def assert_exact(api_url: str, infra: EmbeddedInfra, expected: Expected) -> None:
    tokens = {org: token(infra, org) for org in set(expected.owner.values())}
    pipeline_exact(api_url, expected, tokens)


def test_live_traffic_with_nothing_wrong_reports_no_drift(
    infra: EmbeddedInfra, worker: Proc, api_url: str, tmp_path: Path
) -> None:
    """A dialer keeps sending while reconcile runs, a dry run and then a repair: nothing is
    wrong, so nothing is reported -- in the JSON report, the stored report and the metric
    `dialer_stats_reconcile_drift_total` alike."""
    sim = Proc(infra, tmp_path / "simulate.log", "simulate", "--campaigns", "3", "--rate", "300",
               "--seed", "4242")  # fmt: skip
    campaigns = [f"cmp_4242_{i}" for i in range(3)]
    client = redis.Redis.from_url(infra.valkey.url, decode_responses=True)

    def applied() -> int:
        return sum(int(client.hget(keys.stats(c), "events:applied") or 0) for c in campaigns)

    try:
        wait_until(lambda: applied() > 1500, timeout=60, what="traffic to flow")
        before = applied()
        dry = run_cli(infra, "reconcile", "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        drift_total = metrics.RECONCILE_DRIFT._value.get()
        settings = Settings(
            kafka_bootstrap_servers=infra.env["KAFKA_BOOTSTRAP_SERVERS"],
            redis_url=infra.env["REDIS_URL"],
        )
        repaired = asyncio.run(reconcile_once(settings, campaign=None, dry_run=False, console=None))
        assert applied() > before and sim.process.poll() is None  # live all along
    finally:
        sim.stop()

    for report in (json.loads(dry.stdout), repaired.to_dict()):
        mine = [c for c in report["campaigns"] if c["campaign_id"] in campaigns]
        assert len(mine) == 3
        for c in mine:
            assert c["worker_caught_up"], c
            assert (c["drift"], c["fields"], c["entities_missing"], c["entities_stale"]) == (
                0, [], 0, 0,
            ), c  # fmt: skip
        assert report["totals"]["campaigns_with_drift"] == 0, report["totals"]
    assert metrics.RECONCILE_DRIFT._value.get() == drift_total
    owner = client.hget(keys.stats(campaigns[0]), "org")
    stored = api_get(
        api_url, f"/api/v1/campaigns/{campaigns[0]}/reconciliation", token(infra, owner)
    )
    assert stored.status_code == 200 and stored.json()["drift"] == 0


def test_flushall_mid_stream_then_reconcile_while_sending(
    infra: EmbeddedInfra, worker: Proc, api_url: str, tmp_path: Path
) -> None:
    """FLUSHALL in the middle of a stream; one reconcile while the rest arrives: exact."""
    events = list(itertools.islice(Simulation(campaigns=3, seed=77, prefix="flush").events(), 8000))
    chunks = [events[i : i + 500] for i in range(0, len(events), 500)]
    flushed_at, halfway = threading.Event(), threading.Event()
    producer = threading.Thread(
        target=produce_chunks, args=(infra, tmp_path, chunks, {5: flushed_at, 9: halfway})
    )
    client = redis.Redis.from_url(infra.valkey.url, decode_responses=True)
    producer.start()
    try:
        assert flushed_at.wait(120)
        client.flushall()
        assert halfway.wait(120)
        done = run_cli(infra, "reconcile", "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["totals"]["entities_missing"] > 0
    finally:
        producer.join()
    expected = Expected(events)
    assert_exact(api_url, infra, expected)
    tok = token(infra, expected.owner[expected.campaigns[0]])
    stored = api_get(api_url, f"/api/v1/campaigns/{expected.campaigns[0]}/reconciliation", tok)
    assert stored.status_code == 200 and stored.json()["drift"] > 0


def test_dry_run_reports_hand_edits_and_the_run_repairs_them(
    infra: EmbeddedInfra, worker: Proc, api_url: str, tmp_path: Path
) -> None:
    """Edited counters and deleted keys: --dry-run reports and writes nothing; a run fixes."""
    events = list(itertools.islice(Simulation(campaigns=2, seed=78, prefix="edit").events(), 2000))
    path = tmp_path / "edit.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert run_cli(infra, "produce", str(path)).returncode == 0
    expected = Expected(events)
    assert_exact(api_url, infra, expected)

    client = redis.Redis.from_url(infra.valkey.url, decode_responses=True)
    first, second = expected.campaigns
    client.hincrby(keys.stats(first), "contacts:completed", 5)
    client.hdel(keys.stats(second), "calls:completed")
    batch_id = expected.batches(first)[0]["batch_id"]
    client.hdel(keys.batches(first), batch_id)
    tokens = {org: token(infra, org) for org in set(expected.owner.values())}
    assert not matches(api_url, expected, tokens)
    before = {c: client.hgetall(keys.stats(c)) for c in expected.campaigns}

    dry = run_cli(infra, "reconcile", "--dry-run", "--json", "--campaign", first)
    assert dry.returncode == 0, dry.stderr
    dry_report = json.loads(dry.stdout)
    assert [c["campaign_id"] for c in dry_report["campaigns"]] == [first]
    fields = {(f["scope"], f["field"]): f for f in dry_report["campaigns"][0]["fields"]}
    assert (
        fields[("stats", "contacts:completed")]["found"]
        == fields[("stats", "contacts:completed")]["expected"] + 5
    )
    assert {c: client.hgetall(keys.stats(c)) for c in expected.campaigns} == before

    human = run_cli(infra, "reconcile")
    assert human.returncode == 0, human.stderr
    text = human.stdout.decode()
    assert "Reconciliation" in text and "2 with drift" in text
    assert_exact(api_url, infra, expected)
