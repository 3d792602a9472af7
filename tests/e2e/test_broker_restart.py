"""A dev broker with memory storage restarts empty at offset 0: nothing new may be skipped."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from processors.settings import Settings
from processors.tools.embedded import EmbeddedInfra
from processors.tools.simulate import Simulation
from tests.conftest import wait_until
from tests.e2e.conftest import Proc, run_cli
from tests.oracle import Expected
from tests.store.test_apply import stats_of


@pytest.fixture(scope="module")
def own_infra() -> Iterator[EmbeddedInfra]:
    """A broker of this module's own: the test wipes it."""
    with EmbeddedInfra(Settings(topic_partitions=2), kafka_port=0, redis_port=0) as running:
        yield running


def produce(infra: EmbeddedInfra, path: Path, events: list[dict[str, Any]]) -> None:
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    done = run_cli(infra, "produce", str(path), DIALER_STATS_TOPIC_PARTITIONS="2")
    assert done.returncode == 0, done.stderr


def test_wiped_broker_starts_a_new_epoch_and_loses_nothing(
    own_infra: EmbeddedInfra, tmp_path: Path
) -> None:
    """After the restart, offsets restart at 0; the fence must not skip the new events."""
    worker = Proc(own_infra, tmp_path / "worker.log", "worker")
    client = redis.Redis.from_url(own_infra.valkey.url, decode_responses=True)
    try:
        events = list(
            itertools.islice(Simulation(campaigns=2, seed=9, prefix="wipe").events(), 3000)
        )
        first, second = events[:1500], events[1500:]
        produce(own_infra, tmp_path / "first.jsonl", first)
        wait_until(lambda: stats_of(client, Expected(first)), timeout=60, what="the first half")

        own_infra.restart_broker()
        produce(own_infra, tmp_path / "second.jsonl", second)
        expected = Expected(events)
        wait_until(lambda: stats_of(client, expected), timeout=90, what="the second half")
        epochs = {int(client.hget(k, "epoch") or 0) for k in client.scan_iter("ds:log:*")}
        assert max(epochs) >= 2, epochs
    except AssertionError as exc:
        state = {k: client.hgetall(k) for k in client.scan_iter("ds:log:*")}
        state |= {k: client.hgetall(k) for k in client.scan_iter("*:fence")}
        tallies = {
            k: {f: v for f, v in client.hgetall(k).items() if f.startswith("events:")}
            for k in client.scan_iter("*:stats")
        }
        raise AssertionError(
            f"{exc}\n{state}\n{tallies}\n--- worker log ---\n{worker.output()[-3000:]}"
        ) from exc
    finally:
        worker.stop()
