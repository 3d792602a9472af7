"""The API's Redis client: `connect`'s, with a pool that waits like a BlockingConnectionPool
and costs nothing while a connection is free.

`processors.store.client.connect` opens redis-py's BlockingConnectionPool so that a burst
(a thousand streams waking at once) waits for a connection instead of failing. That pool
takes a condition lock and arms a timeout on every checkout and release: about an eighth
of a 304's CPU in issue 14's profile. `WaitingPool` bounds the connections by a semaphore
instead, free to take while a connection is free; it waits (up to `timeout`) only when all
are in use. The store's `connect` could adopt it; until then the API opens its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError

from processors.settings import Settings
from processors.store.client import Client, connect


class WaitingPool(aioredis.ConnectionPool):
    """`ConnectionPool` with BlockingConnectionPool's waiting, through a semaphore."""

    def __init__(self, *, timeout: float | None = 20, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout = timeout
        self._slots = asyncio.Semaphore(self.max_connections)
        self._held: set[AbstractConnection] = set()

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        if self._slots.locked():
            try:
                async with asyncio.timeout(self.timeout):
                    await self._slots.acquire()
            except TimeoutError as exc:
                raise ConnectionError("No connection available.") from exc
        else:
            await self._slots.acquire()  # returns at once
        try:
            connection: AbstractConnection = await super().get_connection()  # type: ignore[no-untyped-call]
        except BaseException:
            self._slots.release()  # its failed connection was released without the slot
            raise
        self._held.add(connection)
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        await super().release(connection)
        if connection in self._held:
            self._held.discard(connection)
            self._slots.release()


def api_client(settings: Settings) -> Client:
    """`connect(settings)`, its blocking pool replaced by a `WaitingPool` of the same
    options (a cluster client as it is)."""
    client = connect(settings)
    blocking = client.connection_pool if isinstance(client, aioredis.Redis) else None
    if not isinstance(blocking, aioredis.BlockingConnectionPool):
        return client
    pool = WaitingPool.from_url(
        settings.redis_url,
        decode_responses=True,
        health_check_interval=10,
        socket_connect_timeout=5,
        max_connections=blocking.max_connections,
        timeout=blocking.timeout,
    )
    return aioredis.Redis(connection_pool=pool)
