"""Scale and rebalance: workers joining, leaving, dying and coming back as zombies."""

from __future__ import annotations

import signal
import time

from tests.conftest import wait_until
from tests.faults.conftest import Scenario


def progressed(scenario: Scenario, before: int) -> bool:
    return sum(scenario.tallies().values()) > before


def test_workers_join_and_leave_under_load(scenario: Scenario) -> None:
    """One, then three workers, then one leaves cleanly and one dies: exact."""
    first = scenario.worker("w1")
    producer = scenario.produce_in_background(parts=16)
    wait_until(lambda: progressed(scenario, 0), timeout=60, what="w1 to apply")
    second, third = scenario.worker("w2"), scenario.worker("w3")
    time.sleep(8)  # a rebalance spreads the partitions over three members
    first.stop()
    before = sum(scenario.tallies().values())
    wait_until(
        lambda: progressed(scenario, before) or not producer.is_alive(), timeout=60, what="w2/w3"
    )
    scenario.kill(second)
    producer.join()
    scenario.exact()
    scenario.conserved()
    assert third.process.poll() is None


def test_zombie_worker_does_not_corrupt(scenario: Scenario) -> None:
    """A worker frozen past its session (its partitions reassigned) then resumed: exact."""
    zombie = scenario.worker("zombie")
    scenario.worker("healthy")
    producer = scenario.produce_in_background(parts=16)
    wait_until(lambda: progressed(scenario, 0), timeout=60, what="progress")
    zombie.process.send_signal(signal.SIGSTOP)
    time.sleep(15)  # longer than the 10 s session timeout: the group moves on without it
    zombie.process.send_signal(signal.SIGCONT)
    producer.join()
    scenario.exact()
    scenario.conserved()
