"""Graceful shutdown: SIGTERM mid-stream exits promptly, commits, and replays nothing."""

from __future__ import annotations

import signal
import time

from tests.conftest import wait_until
from tests.faults.conftest import Scenario


def test_sigterm_commits_and_the_restart_replays_nothing(scenario: Scenario) -> None:
    """What a stopped worker applied is committed: its successor re-reads none of it."""
    first = scenario.worker("first")
    producer = scenario.produce_in_background(parts=12)
    wait_until(lambda: sum(scenario.tallies().values()) > 500, timeout=60, what="progress")
    first.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    first.process.wait(timeout=30)
    assert time.monotonic() - started < 20, "the worker took too long to stop"
    scenario.worker("second")
    producer.join()
    scenario.exact()
    tallies = scenario.conserved()
    assert tallies.get("events:replayed", 0) == 0, tallies
