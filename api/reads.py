"""The read path's Redis round trips: the token's organization is read in the same round
trip as the campaign's stats hash, so a read costs one round trip, and a conditional read reads
only the hash's head (owner, revision, freshness), never its counters.

The stats hash holds the owner (`org`), the revision (`rev`, bumped by every change to the
campaign's counters or batches) and the freshness fields beside the counters.
"""

from __future__ import annotations

from typing import Any, cast

import redis.asyncio as aioredis

from processors.store import keys
from processors.store.client import Store, token_hash

#: What a conditional read needs of the stats hash: no counter among them.
HEAD = ("org", "rev", "applied_at_ms", "last_event_ms")


async def round_trip(store: Store, *commands: tuple[str, ...]) -> list[Any]:
    """The replies to `commands`, written at once on one connection and read in order.

    What a non-transactional pipeline does, without redis-py's Pipeline object: that costs
    about a sixth of a 304's CPU. A cluster client, whose commands may go to several
    nodes, takes a Pipeline. HGETALL replies come back as lists of pairs or as maps (RESP2
    or 3): `_as_dict` takes either.
    """
    client = store.client
    if not isinstance(client, aioredis.Redis):
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        replies: list[Any] = await pipe.execute()
        return replies
    async with store.dedicated_connection() as connection:
        await connection.send_packed_command(connection.pack_commands(commands))
        return [await connection.read_response() for _ in commands]


def _as_dict(reply: Any) -> dict[str, str]:
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


async def stats(store: Store, token: str, campaign_id: str) -> tuple[str | None, dict[str, str]]:
    """The token's organization and the campaign's whole stats hash, in one round trip."""
    org, fields = await round_trip(
        store, ("HGET", keys.TOKENS, token_hash(token)), ("HGETALL", keys.stats(campaign_id))
    )
    return org, _as_dict(fields)


async def head(
    store: Store, token: str, campaign_id: str, batch_index: tuple[str, int, int] | None = None
) -> tuple[str | None, dict[str, str], list[str]]:
    """The token's organization, the head of the stats hash and, when asked, one page of a
    batch index (key, skip, limit) read after the revision: one round trip."""
    commands = [("HGET", keys.TOKENS, token_hash(token)), ("HMGET", keys.stats(campaign_id), *HEAD)]
    if batch_index is not None:
        index, skip, limit = batch_index
        commands.append(("ZRANGE", index, str(skip), str(skip + limit - 1)))
    org, values, *page = await round_trip(store, *commands)
    fields = {name: value for name, value in zip(HEAD, values, strict=True) if value is not None}
    return org, fields, page[0] if page else []


async def batch_ids(store: Store, index: str, skip: int, limit: int) -> list[str]:
    """One page of a batch index."""
    (page,) = await round_trip(store, ("ZRANGE", index, str(skip), str(skip + limit - 1)))
    return cast(list[str], page)


async def batch_hashes(
    store: Store, campaign_id: str, batch_ids: list[str]
) -> list[dict[str, str]]:
    """The hashes of the given batches, in one round trip."""
    if not batch_ids:
        return []
    replies = await round_trip(store, *(("HGETALL", keys.batch(campaign_id, b)) for b in batch_ids))
    return [_as_dict(reply) for reply in replies]
