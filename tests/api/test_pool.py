"""The API's connection pool: bounded like BlockingConnectionPool, waits for a free
connection, times out with a clear error, never loses a slot to a failed connect; and the
API's client keeps every option of the store's `connect`."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError

from api.pool import WaitingPool, api_client
from processors.settings import Settings
from processors.store.client import connect
from processors.tools.embedded import Valkey, free_port


async def test_waits_for_a_free_connection(valkey_server: Valkey) -> None:
    """With every connection in use, a checkout waits until one is released."""
    pool = WaitingPool.from_url(valkey_server.url, max_connections=2, timeout=10)
    held = [await pool.get_connection() for _ in range(2)]
    third = asyncio.create_task(pool.get_connection())
    await asyncio.sleep(0.05)  # give it every chance to (wrongly) get a connection
    assert not third.done()
    await pool.release(held.pop())
    connection = await asyncio.wait_for(third, timeout=5)
    await pool.release(connection)
    await pool.release(held.pop())
    await pool.aclose()


async def test_times_out_with_a_connection_error(valkey_server: Valkey) -> None:
    """A checkout that finds no free connection within the timeout fails clearly."""
    pool = WaitingPool.from_url(valkey_server.url, max_connections=1, timeout=0.2)
    held = await pool.get_connection()
    with pytest.raises(ConnectionError, match="No connection available"):
        await pool.get_connection()
    await pool.release(held)
    await pool.aclose()


async def test_a_failed_connect_gives_its_slot_back() -> None:
    """Connecting to nothing fails as often as asked, never with "No connection"."""
    pool = WaitingPool.from_url(f"redis://127.0.0.1:{free_port()}", max_connections=1, timeout=1)
    for _ in range(3):
        with pytest.raises(ConnectionError) as failure:
            await pool.get_connection()
        assert "No connection available" not in str(failure.value)
    await pool.aclose()


async def test_the_api_client_keeps_the_store_options(valkey_server: Valkey) -> None:
    """Size, wait timeout and connection options are connect()'s; and it answers."""
    settings = Settings(redis_url=valkey_server.url, redis_max_connections=7)
    store_client, client = connect(settings), api_client(settings)
    theirs, ours = store_client.connection_pool, client.connection_pool
    assert isinstance(ours, WaitingPool)
    assert (ours.max_connections, ours.timeout) == (7, theirs.timeout)  # type: ignore[attr-defined]
    plain = ("host", "port", "db", "decode_responses", "health_check_interval")
    plain += ("socket_connect_timeout", "socket_timeout", "password", "username")
    assert {k: ours.connection_kwargs.get(k) for k in plain} == {
        k: theirs.connection_kwargs.get(k) for k in plain
    }
    assert await client.ping()
    await client.aclose()
    await store_client.aclose()


async def test_a_round_trip_that_fails_leaves_no_reply_behind(valkey_server: Valkey) -> None:
    """An error reply in the middle of a round trip raises; the connection it used is
    dropped, so the next round trip reads its own replies, not the leftovers."""
    from redis.exceptions import ResponseError

    from api.reads import round_trip
    from processors.store.client import Store

    store = Store(api_client(Settings(redis_url=valkey_server.url, redis_max_connections=2)))
    await store.client.set("plain", "v")
    for _ in range(3):
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await round_trip(store, ("HGETALL", "plain"), ("GET", "plain"), ("PING",))
        assert await round_trip(store, ("GET", "plain"), ("ECHO", "x")) == ["v", "x"]
    await store.close()
