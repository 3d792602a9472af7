"""Crashes: deterministic failpoints and random SIGKILLs under load end exact."""

from __future__ import annotations

import random
import time

import pytest

from processors.worker.failpoints import EXIT_CODE
from tests.conftest import wait_until
from tests.faults.conftest import Scenario


@pytest.mark.parametrize("point", ["before_apply", "after_apply"])
def test_crash_at_a_failpoint_then_restart_is_exact(scenario: Scenario, point: str) -> None:
    """A crash before the scripts ran, or after they ran but before the commit: exact."""
    scenario.produce(scenario.lines[: len(scenario.lines) // 2], "first")
    crashing = scenario.worker("crashing", DIALER_STATS_FAILPOINT=f"{point}:1")
    assert crashing.process.wait(timeout=120) == EXIT_CODE
    scenario.produce(scenario.lines[len(scenario.lines) // 2 :], "second")
    scenario.worker("restarted")
    scenario.exact()
    tallies = scenario.conserved()
    if point == "after_apply":
        # the crashed batch was applied but not committed: it came again and was skipped
        assert tallies.get("events:replayed", 0) > 0, tallies


def test_random_sigkills_under_load(scenario: Scenario) -> None:
    """Ten SIGKILLs at random moments while the stream arrives; each time a new worker."""
    rng = random.Random(5)
    producer = scenario.produce_in_background(parts=12)
    for n in range(10):
        worker = scenario.worker(f"victim{n}")
        before = sum(scenario.tallies().values())
        # let it join and apply something, then kill it at a random moment
        wait_until(
            lambda before=before: (
                sum(scenario.tallies().values()) > before or not producer.is_alive()
            ),
            timeout=60,
            what="the worker to apply something",
        )
        time.sleep(rng.uniform(0.0, 1.5))
        scenario.kill(worker)
    producer.join()
    scenario.worker("survivor")
    scenario.exact()
    scenario.conserved()
