"""The store's foundation: the Redis client for the settings, and what every part of the
Store uses (script calls, pipelined reads, Redis's clock)."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import Awaitable, Iterable
from functools import cache
from typing import Any, Final, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from processors.domain.batchstate import unpack_batch
from processors.settings import Settings
from processors.store import keys
from processors.store.lua import BATCH_STATES

Client = aioredis.Redis | RedisCluster
T = TypeVar("T")

#: Calls one Store has in flight at once on Redis Cluster outside a pipeline (slice scripts
#: of many slots, PUBLISH): each holds a connection of its node's pool until it returns,
#: and a full cluster pool fails the call instead of waiting.
CLUSTER_IN_FLIGHT: Final = 16


def connect(settings: Settings) -> Client:
    """A client for `REDIS_URL`; a cluster client for `redis-cluster://` or the cluster flag."""
    url = settings.redis_url
    if url.startswith("redis-cluster://") or settings.redis_cluster:
        url = url.replace("redis-cluster://", "redis://", 1)
        return cast(Client, RedisCluster.from_url(url, decode_responses=True))
    # A blocking pool: a burst of requests (a thousand streams waking at once) waits
    # for a connection instead of failing with "Too many connections".
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        health_check_interval=10,
        socket_connect_timeout=5,
        max_connections=settings.redis_max_connections,
        timeout=10,
    )
    return aioredis.Redis(connection_pool=pool)


class StoreBase:
    """The client and the helpers every concern of the `Store` shares."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._cluster_slots = asyncio.Semaphore(CLUSTER_IN_FLIGHT)

    async def cluster_calls(self, calls: Iterable[Awaitable[T]]) -> list[T | BaseException]:
        """Every call run, CLUSTER_IN_FLIGHT at a time across the Store: the results in
        order, a call's exception in its place (none is dropped, none stops the others)."""

        async def one(call: Awaitable[T]) -> T:
            try:
                async with self._cluster_slots:
                    return await call
            finally:
                if inspect.iscoroutine(call):
                    call.close()  # cancelled before its turn: never awaited, no warning

        return list(await asyncio.gather(*(one(call) for call in calls), return_exceptions=True))

    @staticmethod
    @cache
    def sha(script: str) -> str:
        return hashlib.sha1(script.encode()).hexdigest()

    async def run_script(self, script: str, call_keys: list[str], argv: list[str]) -> Any:
        """EVALSHA, loading the script on NOSCRIPT (a call that failed so never ran)."""
        try:
            return await self.client.evalsha(self.sha(script), len(call_keys), *call_keys, *argv)
        except NoScriptError:
            await self.client.script_load(script)
            return await self.client.evalsha(self.sha(script), len(call_keys), *call_keys, *argv)

    async def close(self) -> None:
        """Release the connection pool."""
        await self.client.aclose()

    async def hashes(self, names: list[str], chunk: int = 2000) -> list[dict[str, str]]:
        """HGETALL of many keys, pipelined in chunks."""
        rows: list[dict[str, str]] = []
        for start in range(0, len(names), chunk):
            pipe = self.client.pipeline(transaction=False)
            for name in names[start : start + chunk]:
                pipe.hgetall(name)
            rows.extend(await pipe.execute())
        return rows

    async def batch_states(
        self, campaign_id: str, batch_ids: list[str], chunk: int = 2000
    ) -> list[dict[str, str]]:
        """Each batch's fields by name (`batchstate.unpack_batch`; {} for a batch with no
        state), in script calls of `chunk` batches (BATCH_STATES)."""
        rows: list[dict[str, str]] = []
        for start in range(0, len(batch_ids), chunk):
            ids = batch_ids[start : start + chunk]
            packed = await self.run_script(BATCH_STATES, [keys.batches(campaign_id)], ids)
            rows += [unpack_batch(p) if p else {} for p in packed]
        return rows

    async def _now_ms(self) -> int:
        seconds, micros = await self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def batch_ids(self, campaign_id: str) -> list[str]:
        """Every batch id listed in the campaign's index."""
        return cast(list[str], await self.client.zrange(keys.batch_index(campaign_id), 0, -1))
