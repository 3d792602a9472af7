"""Redis I/O: the `Store`. Here: applying slices (APPLY_SLICE), announcing changes, the
counter reads, tokens and partition markers; its other concerns in `health`, `series` and
`entities`, on the client and helpers of `base`."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisError

from processors import StoreUnavailable
from processors.domain.batchstate import unpack_batch
from processors.domain.contract import BATCH_STATUSES
from processors.domain.views import batch_view, stats_view
from processors.store import keys
from processors.store.base import Client as Client
from processors.store.base import connect as connect
from processors.store.entities import Entities
from processors.store.health import STUCK_TTL_SECONDS as STUCK_TTL_SECONDS
from processors.store.health import Health
from processors.store.lua import (
    APPLY_SLICE,
    BATCH_PAGE,
)
from processors.store.series import Series
from processors.store.slices import Slice, encode


def token_hash(token: str) -> str:
    """Tokens are stored as their SHA-256 only."""
    return hashlib.sha256(token.encode()).hexdigest()


class Store(Health, Series, Entities):
    """Every read and write dialer-stats makes against Redis: the worker's applies and
    announcements, the API's reads, tokens and partition markers here; health, time series
    and entity state in their own modules."""

    # -- writes --------------------------------------------------------------------------

    async def apply(
        self, slices: Sequence[Slice], epochs: Mapping[tuple[str, int], int]
    ) -> list[list[int]]:
        """Apply slices, one atomic script call each; outcome codes per event.

        A call is retried only when the script was not loaded (NOSCRIPT): such a call never
        ran. Re-running one that did run would be harmless too -- the fence turns it into
        replays -- but it would not be counted as applied.
        """
        return await self.apply_calls([encode(part, epochs) for part in slices])

    async def apply_calls(self, calls: list[tuple[list[str], list[str]]]) -> list[list[int]]:
        """Run encoded APPLY_SLICE calls (one pipeline); outcome codes per event."""
        results: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        for _ in range(3):
            answers = await self._evalsha_many([calls[i] for i in pending])
            retry = []
            for i, answer in zip(pending, answers, strict=True):
                if isinstance(answer, NoScriptError):
                    retry.append(i)
                elif isinstance(answer, Exception):
                    raise StoreUnavailable(f"applying a slice failed: {answer}") from answer
                else:
                    results[i] = [int(code) for code in answer]
            if not retry:
                return results
            await self.client.script_load(APPLY_SLICE)
            pending = retry
        raise StoreUnavailable("the apply script could not be loaded")

    async def apply_in_turn(
        self,
        calls: Iterable[tuple[list[str], list[str]]],
        confirmed: Callable[[int, list[int]], None],
    ) -> None:
        """Run encoded APPLY_SLICE calls one after another on one connection, in order,
        one in Redis at a time: each is sent before the outcome codes of the one before are
        handed to `confirmed` (its index, its codes), and the next is taken from `calls`
        (encoded) while it runs -- the caller's work overlaps Redis's without a thread."""
        if isinstance(self.client, RedisCluster):
            for index, call in enumerate(calls):
                confirmed(index, (await self.apply_calls([call]))[0])
            return
        pending = iter(calls)
        first = next(pending, None)
        if first is None:
            return
        try:
            async with self.dedicated_connection() as conn:
                previous = (0, first)
                await self._send(conn, first)
                for index, call in enumerate(pending, start=1):  # encoded while one runs
                    codes = await self._reply(conn, previous[1])
                    await self._send(conn, call)
                    confirmed(previous[0], codes)
                    previous = (index, call)
                confirmed(previous[0], await self._reply(conn, previous[1]))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"applying a slice failed: {exc}") from exc

    @asynccontextmanager
    async def dedicated_connection(self) -> AsyncIterator[Any]:
        """A connection of a single-node client's pool, the caller's alone: commands are
        written and replies read on it directly, in order. It is disconnected if the caller
        fails (replies may be left on it, unread) and returned to the pool in any case."""
        pool: Any = cast(Any, self.client).connection_pool
        connection = await pool.get_connection()
        try:
            yield connection
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)

    async def _send(self, conn: Any, call: tuple[list[str], list[str]]) -> None:
        call_keys, argv = call
        await conn.send_command("EVALSHA", self.sha(APPLY_SLICE), len(call_keys), *call_keys, *argv)

    async def _reply(self, conn: Any, call: tuple[list[str], list[str]]) -> list[int]:
        """The codes of the call sent last on `conn`; sent again once on NOSCRIPT (a call
        that failed so never ran)."""
        try:
            answer = await conn.read_response()
        except NoScriptError:
            await self.client.script_load(APPLY_SLICE)
            await self._send(conn, call)
            answer = await conn.read_response()
        return [int(code) for code in answer]

    async def _evalsha_many(self, calls: list[tuple[list[str], list[str]]]) -> list[Any]:
        sha = self.sha(APPLY_SLICE)
        if isinstance(self.client, RedisCluster):
            # errors in place, as the pipeline below returns them: `apply_calls` sorts them
            answers = await self.cluster_calls(
                self.client.evalsha(sha, len(call_keys), *call_keys, *argv)
                for call_keys, argv in calls
            )
            for answer in answers:
                if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                    raise answer  # a cancellation: no answer
            return answers
        pipe = self.client.pipeline(transaction=False)
        for call_keys, argv in calls:
            pipe.evalsha(sha, len(call_keys), *call_keys, *argv)
        try:
            return list(await pipe.execute(raise_on_error=False))
        except RedisError as exc:
            raise StoreUnavailable(f"Redis is unavailable: {exc}") from exc

    async def announce(
        self,
        campaign_ids: Iterable[str],
        owners: Mapping[str, str] | None = None,
        *,
        register: Mapping[str, str] | None = None,
    ) -> None:
        """Tell live subscribers (the API's streams) that these campaigns changed, and
        count the change for their organization's rollup (`owners`: campaign -> org).

        The campaign's count goes up before the organization's `#`: a reader that saw `#`
        move sees the campaign's count moved too. A replayed slice announces again, so a
        crash between the apply and this leaves the rollup behind only until the replay.
        `register` (campaign -> org) is `register_campaigns` in the same round trip."""
        pipe = self.client.pipeline(transaction=False)
        for campaign_id, org in (register or {}).items():
            pipe.sadd(keys.org_campaigns(org), campaign_id)
            pipe.sadd(keys.CAMPAIGNS, campaign_id)
        channels = [keys.updates_channel(campaign_id) for campaign_id in campaign_ids]
        if isinstance(self.client, RedisCluster):
            # a cluster pipeline refuses PUBLISH; any node relays it to every other
            for answer in await self.cluster_calls(
                self.client.publish(channel, "1") for channel in channels
            ):
                if isinstance(answer, BaseException):
                    raise answer
        else:
            for channel in channels:
                pipe.publish(channel, "1")
        for campaign_id, org in (owners or {}).items():
            key = keys.org_changes(org)
            pipe.hincrby(key, campaign_id, 1)
            pipe.hsetnx(key, keys.CHANGES_LIFE, secrets.token_hex(8))
            pipe.hincrby(key, keys.CHANGES_SUM, 1)
        await pipe.execute()

    async def ensure_owner(self, campaign_id: str, organization_id: str) -> None:
        """Record the campaign's owner if none is recorded (a lost stats hash)."""
        await self.client.hsetnx(keys.stats(campaign_id), "org", organization_id)

    async def register_campaigns(self, owners: dict[str, str]) -> None:
        """Remember which organization owns each campaign (for campaign listings)."""
        if not owners:
            return
        pipe = self.client.pipeline(transaction=False)
        for campaign_id, org in owners.items():
            pipe.sadd(keys.org_campaigns(org), campaign_id)
            pipe.sadd(keys.CAMPAIGNS, campaign_id)
        await pipe.execute()

    # -- reads ---------------------------------------------------------------------------

    async def campaign_owner(self, campaign_id: str) -> str | None:
        """The organization that owns the campaign, or None when it is unknown."""
        return cast(str | None, await self.client.hget(keys.stats(campaign_id), "org"))

    async def stats_fields(self, campaign_id: str) -> dict[str, str]:
        """The raw stats hash of a campaign."""
        return cast(dict[str, str], await self.client.hgetall(keys.stats(campaign_id)))

    async def stats(self, campaign_id: str) -> dict[str, Any]:
        """The stats response body of a campaign."""
        return stats_view(campaign_id, await self.stats_fields(campaign_id))

    async def batches(
        self, campaign_id: str, *, skip: int = 0, limit: int = 50, status: str | None = None
    ) -> list[dict[str, Any]]:
        """One page of batches ordered by (created_at, batch_id), undated batches last."""
        if status is not None and status not in BATCH_STATUSES:
            raise ValueError(f"unknown batch status {status!r}")
        page = [keys.batch_index(campaign_id, status), keys.batches(campaign_id)]
        flat = await self.run_script(BATCH_PAGE, page, [str(skip), str(skip + limit - 1)])
        return [
            batch_view(campaign_id, flat[n], unpack_batch(flat[n + 1]) if flat[n + 1] else {})
            for n in range(0, len(flat), 2)
        ]

    async def org_campaigns(self, organization_id: str) -> list[str]:
        """Campaign ids owned by an organization, sorted."""
        members = await self.client.smembers(keys.org_campaigns(organization_id))
        return sorted(cast(set[str], members))

    async def fence_offsets(self, campaign_ids: list[str]) -> list[dict[str, int]]:
        """Per campaign: `topic:partition` -> offset of the last message the worker applied."""
        rows = await self.hashes([keys.fence(c) for c in campaign_ids])
        # a fence value is `epoch:offset`
        return [{f: int(v.rpartition(":")[2]) for f, v in row.items()} for row in rows]

    async def create_token(self, organization_id: str) -> str:
        """A new bearer token for the organization; only its hash is stored."""
        token = "gat_" + secrets.token_urlsafe(32)
        await self.client.hset(keys.TOKENS, token_hash(token), organization_id)
        return token

    async def revoke_token(self, token: str) -> bool:
        """Forget a token; False when it was not known."""
        return bool(await self.client.hdel(keys.TOKENS, token_hash(token)))

    async def token_org(self, token: str) -> str | None:
        """The organization a token belongs to, or None."""
        return cast(str | None, await self.client.hget(keys.TOKENS, token_hash(token)))

    # -- partition incarnations ----------------------------------------------------------

    async def log_marker(self, topic: str, partition: int) -> dict[str, str]:
        """The stored epoch and first-record fingerprint of one topic partition."""
        return cast(dict[str, str], await self.client.hgetall(keys.log_marker(topic, partition)))

    async def set_log_markers(self, markers: dict[tuple[str, int], dict[str, str]]) -> None:
        """Store markers of several partitions."""
        if not markers:
            return
        pipe = self.client.pipeline(transaction=False)
        for (topic, partition), fields in markers.items():
            pipe.hset(keys.log_marker(topic, partition), mapping=cast(Any, fields))
        await pipe.execute()

    async def new_epoch(self, topic: str, partition: int) -> int:
        """Start a new incarnation of a partition: fences of the old one stop applying."""
        key = keys.log_marker(topic, partition)
        epoch = int(await self.client.hincrby(key, "epoch", 1))
        await self.client.hdel(key, "first")
        return epoch
