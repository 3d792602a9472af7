"""Reconciliation on the running system: drift repaired while a producer keeps sending."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import Any

import redis

from processors.store import keys
from processors.tools.embedded import EmbeddedInfra
from processors.tools.simulate import Simulation
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
    client.delete(keys.batch(first, batch_id))
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
