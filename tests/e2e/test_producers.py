"""What real producers send, from a real librdkafka producer (confluent-kafka): every codec,
transactions committed and aborted between plain records, null keys, headers,
schema-registry framed JSON and tombstones -- exact through the API, the worker never
exits; the same through `dialer-stats reconcile` after a FLUSHALL. A batch the worker
cannot decode stops only its partition, is named in /readyz, and recovers by itself."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import textwrap
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from confluent_kafka import Producer

from processors.settings import Settings
from processors.store import keys
from processors.tools.embedded import EmbeddedInfra, create_topics, free_port
from processors.tools.produce import route_raw
from processors.tools.simulate import Simulation
from tests.conftest import wait_until
from tests.e2e.conftest import Proc, run_cli, token
from tests.e2e.test_metrics import sample, scrape
from tests.e2e.test_pipeline import assert_exact, matches
from tests.oracle import Expected

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
SETTINGS = Settings()
HEADERS = [("traceparent", b"00-abc-def-01"), ("dup", b"1"), ("dup", b"2"), ("empty", None)]


def producer(infra: EmbeddedInfra, codec: str, **extra: Any) -> Producer:
    return Producer(
        {
            "bootstrap.servers": infra.broker.bootstrap,
            "compression.type": codec,
            "linger.ms": 5,
            "log_level": 0,
            **extra,
        }
    )


def frame(value: bytes) -> bytes:
    """What a schema-registry JSON serializer writes: magic byte, schema id, JSON."""
    return b"\x00" + (17).to_bytes(4, "big") + value


def send(
    out: Producer,
    events: list[dict[str, Any]],
    rng: random.Random,
    *,
    settings: Settings = SETTINGS,
) -> None:
    """Publish events the way the dialer's many producers would: sometimes framed, without
    a key, or with headers."""
    for event in events:
        message = route_raw(json.dumps(event).encode(), settings)
        value = frame(message.value) if rng.random() < 0.3 else message.value
        key = None if rng.random() < 0.1 else message.key
        headers = HEADERS if rng.random() < 0.2 else None
        out.produce(message.topic, value=value, key=key, headers=headers)
        out.poll(0)
    assert out.flush(30) == 0


def ghosts(events: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    """Events that would change the counters if counted: newer versions of real contacts
    and new contacts (what an aborted transaction holds)."""
    contacts = [e for e in events if e["event_type"] == "contact.status_changed"]
    newer = [
        {**e, "event_id": f"{e['event_id']}-{tag}", "version": e["version"] + 1000,
         "status": "completed"}
        for e in contacts[:20]
    ]  # fmt: skip
    new = [
        {**e, "event_id": f"ghost-{tag}-{n}", "contact_id": f"ghost_{tag}_{n}", "version": 1}
        for n, e in enumerate(contacts[:10])
    ]
    return newer + new


def test_real_producers_are_counted_exactly(
    infra: EmbeddedInfra, worker: Proc, api_url: str
) -> None:
    """Each codec, transactions committed and aborted interleaved with plain records, null
    keys, headers, framed JSON and tombstones: the API equals the oracle of the committed
    events, tombstones are counted and never dead-lettered, and the worker never exits."""
    rng = random.Random(1010)
    simulation = Simulation(campaigns=3, organizations=2, seed=1010, prefix="prod")
    events = list(itertools.islice(simulation.events(), 4000))
    chunks = [events[i : i + 250] for i in range(0, len(events), 250)]
    before = scrape(worker.metrics_url)

    plain = {codec: producer(infra, codec) for codec in CODECS}
    txn = producer(infra, "zstd", **{"transactional.id": f"prod-{uuid.uuid4()}"})
    txn.init_transactions(30)
    committed: list[dict[str, Any]] = []
    aborted = duplicates = 0
    for n, chunk in enumerate(chunks):
        if n % 4 == 3:
            # a transaction with plain records of another producer in the middle of it
            commit = n % 8 == 3
            half = len(chunk) // 2
            txn.begin_transaction()
            send(txn, chunk[:half] if commit else ghosts(chunk, str(n)), rng)
            send(plain[CODECS[n % 5]], chunk[half:], rng)
            committed += chunk[half:]
            if commit:
                send(txn, chunk[:half], rng)  # the same events again: duplicates
                txn.commit_transaction(30)
                committed += chunk[:half]
                duplicates += half
            else:
                aborted += 30
                txn.abort_transaction(30)
                txn.begin_transaction()  # the real events in the next transaction
                send(txn, chunk[:half], rng)
                txn.commit_transaction(30)
                committed += chunk[:half]
        else:
            send(plain[CODECS[n % 5]], chunk, rng)
            committed += chunk
    # tombstones on the compacted topics, some with headers, one without a key
    tombstones = plain["lz4"]
    contact_ids = [e["contact_id"] for e in events if e["event_type"] == "contact.status_changed"]
    for contact_id in contact_ids[:40]:
        tombstones.produce(SETTINGS.topic_contacts, value=None, key=contact_id.encode())
    tombstones.produce(SETTINGS.topic_batches, value=None, key=None, headers=HEADERS)
    assert tombstones.flush(30) == 0
    assert len(committed) == len(events)

    expected = Expected(committed)
    tokens = {org: token(infra, org) for org in sorted(set(expected.owner.values()))}
    assert_exact(api_url, expected, tokens)

    # Conservation: every committed record is applied or stale (aborted ones are neither).
    client = redis.Redis.from_url(infra.valkey.url, decode_responses=True)
    tallies = [client.hgetall(keys.stats(c)) for c in expected.campaigns]
    outcomes = sum(int(t.get("events:applied", 0)) + int(t.get("events:stale", 0)) for t in tallies)
    assert outcomes == len(committed) + duplicates

    def counted(name: str, labels: str) -> float:
        return sample(scrape(worker.metrics_url), name, labels) - sample(before, name, labels)

    wait_until(
        lambda: (
            counted("dialer_stats_tombstones_total", 'topic="dialer.contacts"') == 40
            and counted("dialer_stats_tombstones_total", 'topic="dialer.batches"') == 1
        ),
        timeout=30,
        what="the tombstones to be counted",
    )
    assert counted("dialer_stats_events_total", 'outcome="tombstone"') == 41
    assert counted("dialer_stats_events_total", 'outcome="dead_lettered"') == 0
    skipped = sum(
        counted("dialer_stats_aborted_records_total", f'topic="{topic}"')
        for topic in SETTINGS.source_topics
    )
    assert skipped >= aborted > 0
    assert worker.process.poll() is None, worker.output()[-3000:]


def test_reconcile_reads_real_producers_log_after_flushall(
    infra: EmbeddedInfra, worker: Proc, api_url: str
) -> None:
    """The log source reads every codec, skips aborted transactions and tombstones: after a
    FLUSHALL, one `dialer-stats reconcile` brings back exactly the committed events."""
    rng = random.Random(2020)
    simulation = Simulation(campaigns=2, organizations=1, seed=2020, prefix="rlog")
    events = list(itertools.islice(simulation.events(), 1500))
    chunks = [events[i : i + 150] for i in range(0, len(events), 150)]
    txn = producer(infra, "lz4", **{"transactional.id": f"rlog-{uuid.uuid4()}"})
    txn.init_transactions(30)
    for n, chunk in enumerate(chunks):
        txn.begin_transaction()
        send(txn, ghosts(chunk, f"r{n}"), rng)
        txn.abort_transaction(30)
        out = producer(infra, CODECS[n % 5])
        send(out, chunk, rng)
        out.produce(SETTINGS.topic_contacts, value=None, key=b"con_tombstone")
        assert out.flush(30) == 0
    expected = Expected(events)
    assert_exact(
        api_url, expected, {org: token(infra, org) for org in set(expected.owner.values())}
    )

    redis.Redis.from_url(infra.valkey.url).flushall()
    done = run_cli(infra, "reconcile", "--json")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    report = {c["campaign_id"] for c in json.loads(done.stdout)["campaigns"]}
    assert set(expected.campaigns) <= report
    tokens = {org: token(infra, org) for org in set(expected.owner.values())}
    assert_exact(api_url, expected, tokens)
    assert worker.process.poll() is None, worker.output()[-3000:]


# -- a batch the worker cannot decode ------------------------------------------------------

BLOCK_SNAPPY = """
    import os
    _block = os.environ.get("DIALER_STATS_TEST_BLOCK_SNAPPY")
    if _block:  # snappy is "not installed" while the file exists
        import aiokafka.codec as _codec
        _has_snappy = _codec.has_snappy
        _codec.has_snappy = lambda: not os.path.exists(_block) and _has_snappy()
"""


def partition_of(key: bytes, partitions: int) -> int:
    return zlib.crc32(key) % partitions


def readyz(api_url: str) -> dict[str, Any]:
    try:
        body: dict[str, Any] = httpx.get(f"{api_url}/readyz", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return body


@pytest.fixture
def blocked(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """Environment of a process whose snappy codec is unavailable while a file exists."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(BLOCK_SNAPPY))
    block = tmp_path / "snappy.blocked"
    block.touch()
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    yield {"PYTHONPATH": path, "DIALER_STATS_TEST_BLOCK_SNAPPY": str(block)}, block
    block.unlink(missing_ok=True)


def test_an_undecodable_batch_stops_only_its_partition_and_recovers(
    infra: EmbeddedInfra, api_url: str, tmp_path: Path, blocked: tuple[dict[str, str], Path]
) -> None:
    """A worker without snappy: the snappy partition is stuck (metric, /readyz names it
    with the reason), every other partition flows, reconcile refuses the log instead of
    miscounting; once snappy decodes again the worker catches up by itself, never exiting."""
    env, block = blocked
    tag = uuid.uuid4().hex[:8]
    topics = {
        "DIALER_STATS_TOPIC_BATCHES": f"blk{tag}.batches",
        "DIALER_STATS_TOPIC_CONTACTS": f"blk{tag}.contacts",
        "DIALER_STATS_TOPIC_CALL_RECORDS": f"blk{tag}.call_records",
        "DIALER_STATS_TOPIC_DEAD_LETTER": f"blk{tag}.dead_letter",
    }
    settings = Settings(topic_batches=f"blk{tag}.batches", topic_contacts=f"blk{tag}.contacts",
                        topic_call_records=f"blk{tag}.call_records",
                        topic_dead_letter=f"blk{tag}.dead_letter")  # fmt: skip
    asyncio.run(create_topics(infra.broker.bootstrap, settings.all_topics, 4))
    metrics_port = str(free_port())
    blocked_worker = Proc(
        infra, tmp_path / "worker.log", "worker", DIALER_STATS_CONSUMER_GROUP=f"blk-{tag}",
        DIALER_STATS_WORKER_METRICS_PORT=metrics_port, **topics, **env,
    )  # fmt: skip
    stuck_partition = f"{settings.topic_contacts}:0"
    try:
        simulation = Simulation(campaigns=2, organizations=1, seed=3030, prefix=f"blk{tag}")
        events = list(itertools.islice(simulation.events(), 2000))
        snappy, others = producer(infra, "snappy"), producer(infra, "zstd")
        held: list[dict[str, Any]] = []
        for event in events:
            message = route_raw(json.dumps(event).encode(), settings)
            assert message.key is not None
            partition = partition_of(message.key, 4)
            stuck = message.topic == settings.topic_contacts and partition == 0
            out = snappy if stuck else others
            out.produce(message.topic, value=message.value, key=message.key, partition=partition)
            if stuck:
                held.append(event)
        assert snappy.flush(30) == 0 and others.flush(30) == 0
        assert held

        flowing = Expected([e for e in events if e not in held])
        everything = Expected(events)
        tokens = {org: token(infra, org) for org in set(everything.owner.values())}
        wait_until(
            lambda: matches(api_url, flowing, tokens),
            timeout=90,
            what=f"the other partitions to flow; worker log: {blocked_worker.output()[-3000:]}",
        )
        body = wait_until(
            lambda: (
                stuck_partition in readyz(api_url).get("stuck_partitions", {}) and readyz(api_url)
            ),
            timeout=30,
            what="/readyz to name the stuck partition",
        )
        report = body["stuck_partitions"][stuck_partition]
        assert report["offset"] == 0 and "snappy" in report["reason"]
        assert list(body["stuck_partitions"]) == [stuck_partition]
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        labels = f'partition="0",topic="{settings.topic_contacts}"'
        assert sample(scrape(metrics_url), "dialer_stats_partition_stuck", labels) == 1
        assert "is stuck" in blocked_worker.output() and "snappy" in blocked_worker.output()

        # reconciliation refuses a log it cannot read whole
        refused = run_cli(infra, "reconcile", "--dry-run", **topics, **env)
        assert refused.returncode == 1
        assert f"{settings.topic_contacts}[0]: the batch at offset 0 cannot be decoded" in (
            refused.stderr.decode()
        )

        block.unlink()  # snappy is back: the next retry decodes, no restart
        assert_exact(api_url, everything, tokens)

        def forgotten() -> bool:
            body = readyz(api_url)
            return "stuck_partitions" in body and stuck_partition not in body["stuck_partitions"]

        wait_until(forgotten, timeout=30, what="/readyz to forget the partition")
        assert sample(scrape(metrics_url), "dialer_stats_partition_stuck", labels) == 0
        assert blocked_worker.process.poll() is None, blocked_worker.output()[-3000:]
    finally:
        blocked_worker.stop()


def codecs_of(
    bootstrap: str, topic: str, records: int, monkeypatch: pytest.MonkeyPatch
) -> set[int]:
    """The compression codecs of a topic's batches (4 partitions), read until `records`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from processors import fetching

    seen: list[int] = []
    batches = fetching._batches

    def spy(data: Any, *, check_crcs: bool) -> Any:
        found, error = batches(data, check_crcs=check_crcs)
        seen.extend(batch.compression_type for batch in found if not batch.is_control_batch)
        return found, error

    async def read() -> None:
        fetching.install()
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(4)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            done = 0
            for _ in range(100):
                done += sum(len(r) for r in (await consumer.getmany(timeout_ms=200)).values())
                if done >= records:
                    break
            assert done >= records
        finally:
            await consumer.stop()

    with monkeypatch.context() as patch:
        patch.setattr(fetching, "_batches", spy)
        asyncio.run(read())
    return set(seen)


def test_produce_compresses_with_the_setting(
    infra: EmbeddedInfra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dialer-stats produce` compresses: zstd by default, else `--compression` or
    DIALER_STATS_COMPRESSION -- the batches on the wire say so, and they read back whole."""
    events = list(itertools.islice(Simulation(campaigns=1, seed=4040, prefix="zip").events(), 200))
    path = tmp_path / "zip.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    contacts = [e for e in events if e["event_type"] == "contact.status_changed"]
    gzip = {"DIALER_STATS_COMPRESSION": "gzip"}
    runs: list[tuple[list[str], dict[str, str], int]] = [
        ([], {}, 4),  # zstd
        (["--compression", "lz4"], {}, 3),
        ([], gzip, 1),
        (["--compression", "none"], gzip, 0),
    ]
    for n, (args, env, codec) in enumerate(runs):
        topic = f"zip{n}-{uuid.uuid4().hex[:6]}.contacts"
        asyncio.run(create_topics(infra.broker.bootstrap, (topic,), 4))
        done = run_cli(infra, "produce", str(path), *args, DIALER_STATS_TOPIC_CONTACTS=topic, **env)
        assert done.returncode == 0, done.stderr.decode()
        assert codecs_of(infra.broker.bootstrap, topic, len(contacts), monkeypatch) == {codec}
    refused = run_cli(infra, "produce", str(path), "--compression", "brotli")
    assert refused.returncode == 2


def test_dead_letters_are_compressed(
    infra: EmbeddedInfra, worker: Proc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's dead-letter producer compresses with the setting (zstd by default)."""
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"not json at all\n" * 3)
    before = sample(
        scrape(worker.metrics_url), "dialer_stats_dead_letters_total", 'reason="invalid_json"'
    )
    assert run_cli(infra, "produce", str(path), "--raw").returncode == 0
    wait_until(
        lambda: sample(scrape(worker.metrics_url), "dialer_stats_dead_letters_total",
                       'reason="invalid_json"') >= before + 3,
        timeout=60,
        what="the dead letters",
    )  # fmt: skip
    letters = int(before) + 3  # at least this many letters are on the topic by now
    assert codecs_of(infra.broker.bootstrap, SETTINGS.topic_dead_letter, letters, monkeypatch) == {
        4
    }
