"""Redis faults: script cache flushed, connections killed, out of memory, restarts."""

from __future__ import annotations

import time

import httpx
import redis

from processors.domain.contract import Rejection
from processors.domain.events import parse
from tests.conftest import wait_until
from tests.e2e.conftest import Proc, run_cli, token
from tests.faults.conftest import Scenario


def test_script_flush_and_killed_connections_under_load(scenario: Scenario) -> None:
    """SCRIPT FLUSH and CLIENT KILL while batches are being applied: no double counting."""
    scenario.worker("w")
    producer = scenario.produce_in_background(parts=16)
    admin = redis.Redis.from_url(scenario.infra.valkey.url)
    faults = 0
    while producer.is_alive() or faults < 6:
        time.sleep(0.4)
        admin.script_flush()
        admin.client_kill_filter(_type="normal", skipme=True)
        faults += 1
    producer.join()
    scenario.exact()
    scenario.conserved()


def test_out_of_memory_is_retried_without_loss(scenario: Scenario) -> None:
    """maxmemory + noeviction refuses the worker's writes; it retries until memory frees.

    The limit is below what Redis holds already, so the rest's first write is refused
    whatever the rest would add (a limit a little above the memory in use let a rest that
    adds little, or a transient allocation counted when it was measured, pass without ever
    meeting it). That first write is a script call, or a partition's marker when the rest
    brings a partition the first third had not: either is retried, and logs Redis's
    refusal."""
    admin = redis.Redis.from_url(scenario.infra.valkey.url)
    worker = scenario.worker("w")
    first = scenario.lines[: len(scenario.lines) // 3]
    events = sum(1 for line in first if not isinstance(parse(line), Rejection))
    scenario.produce(first, "first")
    wait_until(
        lambda: sum(scenario.tallies().values()) >= events, timeout=60, what="the first third"
    )
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", used // 2)
    try:
        scenario.produce(scenario.lines[len(scenario.lines) // 3 :], "rest")
        wait_until(
            lambda: "used memory > 'maxmemory'" in worker.output(),
            timeout=60,
            what="the worker to hit the memory limit",
        )
    finally:
        admin.config_set("maxmemory", 0)
    scenario.exact()
    scenario.conserved()


def test_restart_without_persistence_then_reconcile(scenario: Scenario) -> None:
    """Redis restarts empty: the API says 503 while it is down; reconcile restores all."""
    infra = scenario.infra
    scenario.worker("w")
    api = Proc(infra, scenario.folder / "api.log", "api", "--port", "18731")
    try:
        wait_until(lambda: _up("http://127.0.0.1:18731"), timeout=30, what="the API")
        scenario.produce(scenario.lines[: len(scenario.lines) // 2], "first")
        wait_until(lambda: sum(scenario.tallies().values()) > 0, timeout=60, what="progress")
        infra.valkey.stop()
        response = httpx.get(
            f"http://127.0.0.1:18731/api/v1/campaigns/{scenario.expected.campaigns[0]}/stats",
            headers={"Authorization": "Bearer gat_whatever"},
            timeout=10,
        )
        assert response.status_code == 503
        assert "Redis" in response.json()["detail"]
        assert httpx.get("http://127.0.0.1:18731/readyz", timeout=10).status_code == 503
        infra.valkey.start(infra.workdir)
        scenario.produce(scenario.lines[len(scenario.lines) // 2 :], "second")
        done = run_cli(infra, "reconcile", "--json")
        assert done.returncode == 0, done.stderr
        scenario.exact()
        tok = token(infra, scenario.expected.owner[scenario.expected.campaigns[0]])
        stats = httpx.get(
            f"http://127.0.0.1:18731/api/v1/campaigns/{scenario.expected.campaigns[0]}/stats",
            headers={"Authorization": f"Bearer {tok}"},
            timeout=10,
        )
        assert stats.json() == scenario.expected.stats(scenario.expected.campaigns[0])
    finally:
        api.stop()


def test_restart_with_persistence_loses_nothing(scenario: Scenario) -> None:
    """With an fsync-always AOF, a Redis restart under load needs no reconciliation."""
    infra = scenario.infra
    admin = redis.Redis.from_url(infra.valkey.url)
    admin.config_set("appendonly", "yes")
    admin.config_set("appendfsync", "always")
    wait_until(
        lambda: int(admin.info("persistence")["aof_rewrite_in_progress"]) == 0,
        timeout=30,
        what="the AOF to be written",
    )
    scenario.worker("w")
    producer = scenario.produce_in_background(parts=12)
    wait_until(lambda: sum(scenario.tallies().values()) > 0, timeout=60, what="progress")
    infra.valkey.extra_args = ["--appendonly", "yes", "--appendfsync", "always"]
    infra.valkey.stop()
    time.sleep(1)
    infra.valkey.start(infra.workdir)
    producer.join()
    scenario.exact()
    scenario.conserved()


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
