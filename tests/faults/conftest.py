"""Fault-injection fixtures: a private broker + valkey per module, workers to kill, oracles."""

from __future__ import annotations

import itertools
import json
import signal
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from processors.settings import Settings
from processors.store import keys
from processors.tools.embedded import EmbeddedInfra
from processors.tools.simulate import Simulation
from tests.conftest import wait_until
from tests.e2e.conftest import Proc, read_topic, run_cli
from tests.oracle import Expected
from tests.store.test_apply import stats_of

BAD_LINES = [b"not json", b"[1]", b'{"event_type": "nope"}']


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedInfra]:
    """A broker and valkey of the module's own: these tests break them."""
    with EmbeddedInfra(Settings(topic_partitions=4), kafka_port=0, redis_port=0) as running:
        yield running


class Scenario:
    """A stream of events (bad lines mixed in) with its oracle and the checks of issue 5."""

    def __init__(self, infra: EmbeddedInfra, folder: Path, seed: int, size: int) -> None:
        self.infra = infra
        self.folder = folder
        sim = Simulation(campaigns=4, organizations=2, seed=seed, prefix=f"f{seed}_")
        self.events = list(itertools.islice(sim.events(), size))
        self.lines = [json.dumps(e).encode() for e in self.events]
        for n, bad in enumerate(BAD_LINES):
            self.lines.insert((n + 1) * len(self.lines) // (len(BAD_LINES) + 1), bad)
        self.expected = Expected(self.events)
        self.rejects = len(BAD_LINES)  # lines that must end as dead letters
        self.client = redis.Redis.from_url(infra.valkey.url, decode_responses=True)
        self.workers: list[Proc] = []

    def intruders(self, count: int) -> list[bytes]:
        """Lines naming the scenario's campaigns under another organization (tenant mismatch)."""
        lines = []
        for n, event in enumerate(self.events[:count]):
            foreign = {**event, "organization_id": "org_intruder", "event_id": f"evt_intr_{n}"}
            lines.append(json.dumps(foreign).encode())
        self.lines += lines
        self.rejects += len(lines)
        return lines

    def chunks(self, count: int) -> list[list[bytes]]:
        size = -(-len(self.lines) // count)
        return [self.lines[i : i + size] for i in range(0, len(self.lines), size)]

    def produce(self, lines: list[bytes], name: str) -> None:
        path = self.folder / f"{name}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        done = run_cli(self.infra, "produce", str(path), "--raw")
        assert done.returncode == 0, done.stderr

    def produce_in_background(self, parts: int = 10) -> threading.Thread:
        chunks = self.chunks(parts)
        thread = threading.Thread(
            target=lambda: [self.produce(c, f"chunk{n}") for n, c in enumerate(chunks)]
        )
        thread.start()
        return thread

    def worker(self, name: str, **env: str) -> Proc:
        proc = Proc(self.infra, self.folder / f"{name}.log", "worker", **env)
        self.workers.append(proc)
        return proc

    def kill(self, proc: Proc, sig: int = signal.SIGKILL) -> None:
        proc.process.send_signal(sig)
        proc.process.wait(timeout=30)
        proc.handle.close()

    def stop_all(self) -> None:
        for proc in self.workers:
            proc.stop()

    def exact(self, timeout: float = 120) -> None:
        """Counters equal the oracle for every campaign."""
        wait_until(
            lambda: stats_of(self.client, self.expected), timeout=timeout, what="exact stats"
        )

    def tallies(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for campaign in self.expected.campaigns:
            for field, value in self.client.hgetall(keys.stats(campaign)).items():
                if field.startswith("events:"):
                    out[field] = out.get(field, 0) + int(value)
        return out

    def dead_letters(self) -> set[tuple[str, int, int]]:
        records = read_topic(self.infra.broker.bootstrap, "dialer.dead_letter", self.rejects)
        letters = [json.loads(r.value) for r in records]
        # a crash after sending a dead letter but before the commit sends it again
        return {(x["source_topic"], x["source_partition"], x["source_offset"]) for x in letters}

    def conserved(self) -> dict[str, int]:
        """Every line is exactly one of applied, stale, or dead-lettered (re-deliveries apart)."""
        tallies = self.tallies()
        letters = len(self.dead_letters())
        counted = tallies.get("events:applied", 0) + tallies.get("events:stale", 0) + letters
        assert counted == len(self.lines), (tallies, letters, len(self.lines))
        return tallies


@pytest.fixture
def scenario(
    infra: EmbeddedInfra, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Scenario]:
    """A fresh Redis and consumer group; the topics keep earlier modules' data."""
    infra.broker.stop()
    infra.broker.start(infra.workdir)
    import asyncio

    asyncio.run(infra.create_topics())
    client = redis.Redis.from_url(infra.valkey.url)
    client.flushall()
    seed = zlib.crc32(request.node.name.encode()) % 10_000  # the same data on every run
    current = Scenario(infra, tmp_path, seed, 4000)
    yield current
    current.stop_all()
