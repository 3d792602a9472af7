"""Redis Cluster: three valkey masters on loopback; every script call stays in one slot."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from redis.asyncio.cluster import RedisCluster

from processors.store import keys
from processors.store.base import CLUSTER_IN_FLIGHT
from processors.store.client import Store
from processors.store.slices import encode, group
from processors.tools.embedded import EmbeddedInfra, Valkey
from processors.tools.simulate import Simulation
from tests.conftest import wait_until
from tests.e2e.conftest import Proc, run_cli
from tests.oracle import Expected
from tests.streams import entity_event, parsed

SLOTS = [(0, 5460), (5461, 10922), (10923, 16383)]


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is valid and free too."""
    import socket

    for port in range(20000 + random.randrange(20000), 45000):
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
                return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Valkey]]:
    """Three cluster-enabled valkey-servers joined into one cluster with all slots served."""
    nodes = []
    for n in range(3):
        node = Valkey(
            port=cluster_port(),
            extra_args=["--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                        "--cluster-config-file", f"nodes-{n}.conf"]
        )  # fmt: skip
        node.start(tmp_path_factory.mktemp(f"cluster{n}"))
        nodes.append(node)
    try:
        clients = [redis.Redis(port=node.port) for node in nodes]
        for client, (first, last) in zip(clients, SLOTS, strict=True):
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        for node in nodes[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        wait_until(
            lambda: all(
                b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO") for c in clients
            ),
            timeout=30,
            what="the cluster to form",
        )
        time.sleep(1)  # let every node learn the others' slots
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def test_end_to_end_on_redis_cluster(
    infra: EmbeddedInfra, cluster: list[Valkey], tmp_path: Path
) -> None:
    """Worker, API and reconciliation against a 3-master cluster: exact, like standalone."""
    url = f"redis-cluster://127.0.0.1:{cluster[0].port}/0"
    env = {"REDIS_URL": url, "DIALER_STATS_CONSUMER_GROUP": "cluster-e2e"}
    events = list(itertools.islice(Simulation(campaigns=6, seed=51, prefix="cl").events(), 3000))
    path = tmp_path / "cluster.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    worker = Proc(infra, tmp_path / "worker.log", "worker", **env)
    port = 18741
    api = Proc(infra, tmp_path / "api.log", "api", "--port", str(port), **env)
    try:
        assert run_cli(infra, "produce", str(path)).returncode == 0
        expected = Expected(events)
        tokens = {}
        for org in set(expected.owner.values()):
            done = run_cli(infra, "token", "create", "--org", org, **env)
            assert done.returncode == 0, done.stderr
            tokens[org] = done.stdout.decode().strip()
        from tests.e2e.test_pipeline import assert_exact

        assert_exact(f"http://127.0.0.1:{port}", expected, tokens)
        # announcing (PUBLISH, refused by a cluster pipeline) never failed an apply
        assert "failed; retrying" not in worker.output()
        # the campaigns really are spread over the masters
        owners = {redis.Redis(port=n.port).dbsize() > 0 for n in cluster}
        assert owners == {True}
        dry = run_cli(infra, "reconcile", "--dry-run", "--json", **env)
        assert dry.returncode == 0, dry.stderr
        report = json.loads(dry.stdout)
        mine = [c for c in report["campaigns"] if c["campaign_id"] in expected.campaigns]
        assert len(mine) == len(expected.campaigns) and all(c["drift"] == 0 for c in mine)
    finally:
        worker.stop()
        api.stop()


@contextlib.asynccontextmanager
async def small_pool_store(cluster: list[Valkey]) -> AsyncIterator[Store]:
    """A Store on the cluster whose pool per node holds only the calls it has in flight
    (a full pool fails a call instead of waiting), its client in use, as a worker's is (a
    fresh one queues at first)."""
    client = RedisCluster(
        host="127.0.0.1", port=cluster[0].port, max_connections=CLUSTER_IN_FLIGHT,
        decode_responses=True,
    )  # fmt: skip
    store = Store(client)
    try:
        await client.ping()
        yield store
    finally:
        await store.close()


async def test_one_apply_announces_hundreds_of_campaigns_on_a_small_pool(
    cluster: list[Valkey],
) -> None:
    """A fetch may change hundreds of campaigns: every announcement reaches a subscriber
    and every change is counted for the rollup, with a connection pool per node no bigger
    than the announcements in flight (a full pool fails a call instead of waiting)."""
    campaigns = [f"cmp_many_{n}" for n in range(300)]
    subscriber = redis.Redis(port=cluster[1].port).pubsub()
    subscriber.psubscribe(keys.UPDATES_PATTERN)
    wait_until(
        lambda: (subscriber.get_message(timeout=0.1) or {}).get("type") == "psubscribe",
        timeout=10,
        what="the subscription",
    )
    async with small_pool_store(cluster) as store:
        await store.announce(campaigns, dict.fromkeys(campaigns, "org_many"))
        changes = await store.client.hgetall(keys.org_changes("org_many"))
    heard: set[str] = set()

    def all_heard() -> bool:
        while (message := subscriber.get_message(timeout=0.05)) is not None:
            if message["type"] == "pmessage":
                heard.add(keys.campaign_of_channel(message["channel"].decode()))
        return len(heard) == len(campaigns)

    wait_until(all_heard, timeout=30, what="every announcement")
    assert heard == set(campaigns)
    assert changes[keys.CHANGES_SUM] == str(len(campaigns))
    assert all(changes[c] == "1" for c in campaigns)


async def test_one_apply_of_hundreds_of_campaigns_on_a_small_pool(
    cluster: list[Valkey],
) -> None:
    """A fetch may hold slices of hundreds of campaigns, each its own script call in its
    own slot: all are applied with a pool per node no bigger than the calls in flight,
    and each campaign's counters, read through Redis, hold its one contact."""
    campaigns = [f"cmp_wide_{n}" for n in range(8 * CLUSTER_IN_FLIGHT + 3)]
    messages = [
        ("dialer.contacts", 0, offset, parsed(entity_event(campaign, "org_wide", "contact", 0, 1)))
        for offset, campaign in enumerate(campaigns)
    ]
    calls = [encode(part, {("dialer.contacts", 0): 1}) for part in group(messages)]
    async with small_pool_store(cluster) as store:
        outcomes = await store.apply_calls(calls)
        counted = [
            await store.client.hget(keys.stats(campaign), "contacts") for campaign in campaigns
        ]
    assert outcomes == [[0]] * len(campaigns)
    assert counted == ["1"] * len(campaigns)


async def test_the_api_hears_announcements_on_a_cluster(cluster: list[Valkey]) -> None:
    """The API's one subscription per process (`api.live.Updates`) works on Redis Cluster:
    a worker's announcement wakes the streams of its campaign, with the campaign's stats
    read for them (what only a heard announcement does: a resubscription wakes every
    stream with nothing read)."""
    from api.live import Updates

    store = Store(RedisCluster(host="127.0.0.1", port=cluster[2].port, decode_responses=True))
    updates = Updates(store)
    updates.start()
    try:
        async with updates.watch("cmp_heard") as changed:
            deadline = time.monotonic() + 20
            while "cmp_heard" not in updates.latest:
                assert time.monotonic() < deadline, "no announcement reached the API"
                changed.clear()
                await store.announce(["cmp_heard"])
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await changed.wait()
    finally:
        await updates.stop()
        await store.close()
