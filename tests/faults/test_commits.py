"""Progress is committed, read back the way any Kafka tool reads it.

These are also the contract tests of the worker's faust integration
(`processors/worker/app.py`): the commit loop commits processed offsets, revocation hands
partitions over at their applied offsets, stop commits, and a crash re-reads only what
came after the last commit. A faust or aiokafka upgrade that breaks one fails here.
"""

from __future__ import annotations

import asyncio
import json
import signal

from aiokafka import AIOKafkaConsumer, TopicPartition

from processors.worker.failpoints import EXIT_CODE
from tests.conftest import wait_until
from tests.e2e.conftest import read_topic
from tests.faults.conftest import Scenario

SOURCES = ("dialer.batches", "dialer.contacts", "dialer.call_records")
GROUP = "dialer-stats"


def committed(bootstrap: str) -> dict[tuple[str, int], int | None]:
    """The group's committed offset of every source partition (a plain aiokafka client)."""

    async def run() -> dict[tuple[str, int], int | None]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False
        )
        await consumer.start()
        try:
            out: dict[tuple[str, int], int | None] = {}
            for topic in SOURCES:
                for partition in sorted(consumer.partitions_for_topic(topic) or ()):
                    out[(topic, partition)] = await consumer.committed(
                        TopicPartition(topic, partition)
                    )
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run())


def log_ends(scenario: Scenario) -> dict[tuple[str, int], int]:
    """One past the last offset of every non-empty source partition (read from the log)."""
    ends: dict[tuple[str, int], int] = {}
    for topic in SOURCES:
        for record in read_topic(scenario.infra.broker.bootstrap, topic, 1, timeout=5):
            where = (record.topic, record.partition)
            ends[where] = max(ends.get(where, 0), record.offset + 1)
    return ends


def commits_reach(scenario: Scenario, ends: dict[tuple[str, int], int]) -> bool:
    now = committed(scenario.infra.broker.bootstrap)
    return all((now.get(where) or 0) >= end for where, end in ends.items())


def test_a_drained_group_commits_to_the_log_end(scenario: Scenario) -> None:
    """Caught up, the group's commits equal the log end; SIGTERM keeps them there."""
    scenario.produce(scenario.lines, "all")
    ends = log_ends(scenario)
    assert sum(ends.values()) == len(scenario.lines)
    before = committed(scenario.infra.broker.bootstrap)
    assert all(offset is None for offset in before.values()), before
    worker = scenario.worker("drainer")
    scenario.exact()
    wait_until(lambda: commits_reach(scenario, ends), timeout=30, what="commits at the log end")
    scenario.kill(worker, signal.SIGTERM)
    assert commits_reach(scenario, ends)
    scenario.conserved()


def test_a_crash_rereads_only_what_came_after_the_last_commit(scenario: Scenario) -> None:
    """SIGKILL right after applying new events: the successor replays those, nothing older."""
    head, tail = scenario.lines[:-300], scenario.lines[-300:]
    scenario.produce(head, "head")
    ends = log_ends(scenario)
    worker = scenario.worker("first", DIALER_STATS_COMMIT_INTERVAL="1")
    wait_until(lambda: commits_reach(scenario, ends), timeout=120, what="head committed")
    applied_head = sum(scenario.tallies().values())
    scenario.produce(tail, "tail")
    wait_until(
        lambda: sum(scenario.tallies().values()) >= applied_head + len(tail) - 10,
        timeout=60,
        what="the tail applied",
    )
    scenario.kill(worker)
    scenario.worker("second")
    scenario.exact()
    tallies = scenario.conserved()
    assert 0 <= tallies.get("events:replayed", 0) <= len(tail), tallies


def test_a_rebalance_hands_over_at_the_applied_offsets(scenario: Scenario) -> None:
    """A second member joins: the first commits the revoked partitions at what it applied,
    and the second starts there (nothing re-read). The commit interval is longer than the
    test, so only the revocation can have committed."""
    slow = {"DIALER_STATS_COMMIT_INTERVAL": "300"}
    scenario.produce(scenario.lines, "all")
    ends = log_ends(scenario)
    first = scenario.worker("first", **slow)
    scenario.exact()
    assert not commits_reach(scenario, ends)
    second = scenario.worker("second", **slow)
    wait_until(lambda: commits_reach(scenario, ends), timeout=90, what="commits on revocation")
    before = sum(scenario.tallies().values())
    extra = scenario.lines[:50]  # re-sent lines: stale or dead letters again, nothing new
    scenario.produce(extra, "again")
    wait_until(
        lambda: sum(scenario.tallies().values()) >= before + 40,
        timeout=60,
        what="the re-sent lines processed",
    )
    assert first.process.poll() is None and second.process.poll() is None
    scenario.exact()
    tallies = scenario.tallies()
    assert tallies.get("events:replayed", 0) == 0, tallies


def test_tenant_letters_survive_a_crash_between_script_and_send(scenario: Scenario) -> None:
    """The scripts judged foreign events, then the worker died before the dead letters
    left: the successor re-reads the uncommitted slice and sends every one of them."""
    half = len(scenario.lines) // 2
    own_first, rest = scenario.lines[:half], scenario.lines[half:]
    scenario.lines = list(own_first)  # the intruders go after them
    intruders = scenario.intruders(40)  # appended to scenario.lines
    scenario.produce(own_first, "owners")
    owner = scenario.worker("owner")
    wait_until(
        lambda: commits_reach(scenario, log_ends(scenario)), timeout=120, what="owners applied"
    )
    scenario.kill(owner, signal.SIGTERM)
    scenario.produce(intruders, "intruders")
    scenario.lines += rest
    scenario.produce(rest, "rest")
    crashing = scenario.worker("crashing", DIALER_STATS_FAILPOINT="after_script:1")
    assert crashing.process.wait(timeout=120) == EXIT_CODE
    judged = scenario.tallies().get("events:tenant_mismatch", 0)
    assert judged > 0, "the crashed batch held no foreign event: the test proves nothing"
    letters = read_topic(scenario.infra.broker.bootstrap, "dialer.dead_letter", 0, timeout=2)
    early = [json.loads(r.value) for r in letters]
    assert not any(x["reason"] == "tenant_mismatch" for x in early), [
        (x["reason"], x["source_topic"], x["source_offset"]) for x in early
    ]
    scenario.worker("successor")
    scenario.exact()
    scenario.conserved()
    reasons = [
        json.loads(r.value)["reason"]
        for r in read_topic(scenario.infra.broker.bootstrap, "dialer.dead_letter", 43)
    ]
    assert reasons.count("tenant_mismatch") >= len(intruders)
