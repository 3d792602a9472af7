"""`dialer-stats api --workers 2`: every process subscribes to the updates and feeds the
push streams it holds, and /metrics counts the requests of every process."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from api.main import create_app
from api.serve import settled
from processors.settings import Settings
from processors.store.client import Store
from processors.tools.embedded import Valkey, free_port
from tests.api.serving import seeded_valkey
from tests.conftest import async_wait_until, wait_until
from tests.store.test_apply import apply_events
from tests.streams import entity_event, parsed

STATS = "/api/v1/campaigns/cmp_0/stats"


@pytest.fixture
async def store(valkey_server: Valkey) -> AsyncIterator[Store]:
    """Real valkey with one campaign of org_0."""
    async with seeded_valkey(valkey_server.url, seed=5, campaigns=1, size=80) as store:
        yield store


@pytest.fixture
def api(store: Store, valkey_server: Valkey, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Two API processes on one port; their multiprocess metrics directory."""
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    log = open(tmp_path / "api.log", "wb")  # noqa: SIM115
    env = {
        **os.environ,
        "REDIS_URL": valkey_server.url,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "DIALER_STATS_STREAM_HEARTBEAT_SECONDS": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "processors.cli", "api", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    subscriptions = redis.Redis.from_url(valkey_server.url)
    try:
        # each process subscribes in its lifespan: two subscribed connections, seen by valkey
        wait_until(lambda: _subscribers(subscriptions) == 2, timeout=60, what="2 subscribers")
        wait_until(lambda: _up(url), timeout=30, what="the API")
        yield url, metrics_dir
    finally:
        subscriptions.close()
        process.terminate()
        process.wait(timeout=30)
        log.close()
    assert process.returncode == 0, (tmp_path / "api.log").read_text()


def _subscribers(client: redis.Redis) -> int:
    return sum(1 for c in client.client_list() if int(c.get("psub", 0)) > 0)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _count(metrics: str, route: str) -> float:
    labels = rf'\{{[^}}]*route="{re.escape(route)}"[^}}]*\}}'
    pattern = rf"dialer_stats_http_request_seconds_count{labels} (\S+)"
    return sum(float(value) for value in re.findall(pattern, metrics))


async def test_metrics_count_the_requests_of_every_process(
    api: tuple[str, Path], store: Store
) -> None:
    """Requests on new connections spread over both processes (each writes its own file);
    /metrics, whichever process answers it, counts all of them."""
    url, metrics_dir = api
    headers = {"Authorization": f"Bearer {await store.create_token('org_0')}"}
    sent = 0

    async def both_processes_served() -> bool:
        nonlocal sent
        for _ in range(10):
            async with httpx.AsyncClient(base_url=url) as fresh:  # a new connection each
                assert (await fresh.get(STATS, headers=headers)).status_code == 200
            sent += 1
        return len(list(metrics_dir.glob("histogram_*.db"))) >= 2

    await async_wait_until(both_processes_served, timeout=60, interval=0, what="both served")
    for _ in range(6):  # whichever process answers
        async with httpx.AsyncClient(base_url=url) as fresh:

            async def complete(client: Any = fresh) -> bool:
                text = (await client.get("/metrics")).text
                return _count(text, "/api/v1/campaigns/{campaign_id}/stats") == sent

            await async_wait_until(complete, timeout=10, interval=0.05, what=f"{sent} counted")
            text = (await fresh.get("/metrics")).text  # and the answering process's own
            assert "process_resident_memory_bytes" in text and "python_gc_" in text


async def test_streams_get_updates_from_every_process(api: tuple[str, Path], store: Store) -> None:
    """Streams opened on separate connections (spread over the processes) each get the
    snapshot, then the change announced after it."""
    url, _ = api
    token = await store.create_token("org_0")
    snapshots: list[asyncio.Event] = [asyncio.Event() for _ in range(6)]
    revisions: list[list[int]] = [[] for _ in snapshots]

    async def follow(n: int) -> None:
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as client,
            client.stream("GET", f"{STATS}/stream?access_token={token}") as response,
        ):
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    revisions[n].append(int(line[4:]))
                    snapshots[n].set()
                    if len(revisions[n]) == 2:
                        return

    streams = [asyncio.create_task(follow(n)) for n in range(len(snapshots))]
    try:
        await asyncio.wait_for(asyncio.gather(*(s.wait() for s in snapshots)), timeout=30)
        event = parsed(entity_event("cmp_0", "org_0", "contact", 777, 1))
        await apply_events(store, [("t", 1, 0, event)])
        await store.announce(["cmp_0"])
        await asyncio.wait_for(asyncio.gather(*streams), timeout=30)
    finally:
        for stream in streams:
            stream.cancel()
    assert all(first < second for first, second in revisions), revisions


def test_a_served_app_leaves_what_it_loaded_out_of_the_collectors_reach() -> None:
    """What the app loads lives as long as the process: frozen, a full collection does not
    walk it again on every read's allocation burst."""
    before = gc.get_freeze_count()
    try:
        app = settled(create_app(Settings()))
        assert app.routes
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
