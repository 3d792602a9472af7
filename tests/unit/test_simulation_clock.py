"""The simulator's wall clock (`simulate --wall-clock`, used by `up`): live event times."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from processors.tools.simulate import Simulation

TIMES = ("occurred_at", "created_at")


def untimed(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in TIMES}


def test_the_wall_clock_changes_the_times_and_nothing_else() -> None:
    """The same seed gives the same events on either clock; on the wall clock they are
    timed when they are made."""
    before = datetime.now(UTC)
    live = list(itertools.islice(Simulation(seed=5, wall_clock=True).events(), 400))
    after = datetime.now(UTC)
    simulated = list(itertools.islice(Simulation(seed=5).events(), 400))
    assert [untimed(e) for e in live] == [untimed(e) for e in simulated]
    times = [datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00")) for e in live]
    assert all(before <= t <= after for t in times)
    assert times != [datetime.fromisoformat(e["occurred_at"]) for e in simulated]
