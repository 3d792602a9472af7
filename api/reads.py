"""The read path's Redis round trips: the token's organization is read in the same round
trip as the campaign's stats hash, so a read costs one round trip, and a conditional read reads
only the hash's head (owner, revision, freshness), never its counters.

The stats hash holds the owner (`org`), the revision (`rev`, bumped by every change to the
campaign's counters or batches) and the freshness fields beside the counters.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.client import NEVER_DECODE
from redis.exceptions import NoScriptError

from processors.domain.batchstate import unpack_batch
from processors.store import keys
from processors.store.client import Store, token_hash
from processors.store.lua import BATCH_PAGE, BATCH_PROGRESS

#: What a conditional read needs of the stats hash: no counter among them.
HEAD = ("org", "rev", "applied_at_ms", "last_event_ms")


async def round_trip(store: Store, *commands: tuple[str, ...], undecoded: int = 0) -> list[Any]:
    """The replies to `commands`, written at once on one connection and read in order
    (the last `undecoded` of them as bytes).

    What a non-transactional pipeline does, without redis-py's Pipeline object: that costs
    about a sixth of a 304's CPU. A cluster client, whose commands may go to several
    nodes, takes a Pipeline. HGETALL replies come back as lists of pairs or as maps (RESP2
    or 3): `_as_dict` takes either.
    """
    first_raw = len(commands) - undecoded
    client = store.client
    if not isinstance(client, aioredis.Redis):
        pipe = client.pipeline(transaction=False)
        for n, command in enumerate(commands):
            pipe.execute_command(*command, **({NEVER_DECODE: []} if n >= first_raw else {}))
        replies: list[Any] = await pipe.execute()
        return replies
    async with store.dedicated_connection() as connection:
        await connection.send_packed_command(connection.pack_commands(commands))
        return [
            await connection.read_response(disable_decoding=n >= first_raw)
            for n in range(len(commands))
        ]


def as_dict(reply: Any) -> dict[str, str]:
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


async def stats(store: Store, token: str, campaign_id: str) -> tuple[str | None, dict[str, str]]:
    """The token's organization and the campaign's whole stats hash, in one round trip."""
    org, fields = await round_trip(
        store, ("HGET", keys.TOKENS, token_hash(token)), ("HGETALL", keys.stats(campaign_id))
    )
    return org, as_dict(fields)


async def head(store: Store, token: str, campaign_id: str) -> tuple[str | None, dict[str, str]]:
    """The token's organization and the head of the stats hash: one round trip."""
    org, fields, _ = await head_and_page(store, token, campaign_id, None)
    return org, fields


async def head_and_page(
    store: Store, token: str, campaign_id: str, page: tuple[str, int, int] | None
) -> tuple[str | None, dict[str, str], list[tuple[str, bytes]] | None]:
    """The token's organization, the head of the stats hash and, when asked, one page of a
    batch index (index, skip, limit) as `batch_page` reads it, read after the head: one
    round trip."""
    commands = [("HGET", keys.TOKENS, token_hash(token)), ("HMGET", keys.stats(campaign_id), *HEAD)]
    if page is not None:
        commands.append(batch_page_command(campaign_id, *page))
    org, values, *listed = await scripted(
        store, BATCH_PAGE, *commands, undecoded=0 if page is None else 1
    )
    fields = {name: value for name, value in zip(HEAD, values, strict=True) if value is not None}
    return org, fields, _listed(listed[0]) if listed else None


def batch_page_command(campaign_id: str, index: str, skip: int, limit: int) -> tuple[str, ...]:
    """The BATCH_PAGE call of one page (see `batch_page`)."""
    return (
        "EVALSHA", Store.sha(BATCH_PAGE), "2", index, keys.batches(campaign_id),
        str(skip), str(skip + limit - 1),
    )  # fmt: skip


async def scripted(
    store: Store, script: str, *commands: tuple[str, ...], undecoded: int = 0
) -> list[Any]:
    """`round_trip` of commands that call `script`, loaded first if Redis has lost it (a
    script that was not loaded never ran, so running it again is safe)."""
    try:
        return await round_trip(store, *commands, undecoded=undecoded)
    except NoScriptError:
        await store.client.script_load(script)
        return await round_trip(store, *commands, undecoded=undecoded)


def _listed(flat: list[bytes]) -> list[tuple[str, bytes]]:
    return [(flat[n].decode(), flat[n + 1]) for n in range(0, len(flat), 2)]


async def batch_page(
    store: Store, campaign_id: str, index: str, skip: int, limit: int
) -> list[tuple[str, bytes]]:
    """One page of a batch index: (batch id, its packed state) in order, one call."""
    call = batch_page_command(campaign_id, index, skip, limit)
    (flat,) = await scripted(store, BATCH_PAGE, call, undecoded=1)
    return _listed(flat)


async def batch_progress(
    store: Store, campaign_id: str, batch_id: str, minutes: list[int]
) -> tuple[dict[str, str], int]:
    """The batch's fields ({} for none) and how many of its contacts became terminal in
    `minutes` (since the epoch), in one script call (BATCH_PROGRESS)."""
    hours: dict[int, list[int]] = {}
    for minute in minutes:
        hours.setdefault(minute // 60, []).append(minute % 60)
    call_keys = [keys.batches(campaign_id), keys.layout(campaign_id)]
    call_keys += [keys.progress(campaign_id, hour) for hour in hours]
    argv = [batch_id]
    for of_hour in hours.values():
        argv += [str(len(of_hour)), *map(str, of_hour)]
    call = ("EVALSHA", Store.sha(BATCH_PROGRESS), str(len(call_keys)), *call_keys, *argv)
    ((packed, count),) = await scripted(store, BATCH_PROGRESS, call)
    return (unpack_batch(packed) if packed else {}), int(count)
