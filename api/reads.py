"""The read path's Redis round trips: the token's organization is read in the same pipeline
as the campaign's stats hash, so a read costs one round trip, and a conditional read reads
only the hash's head (owner, revision, freshness), never its counters.

The stats hash holds the owner (`org`), the revision (`rev`, bumped by every change to the
campaign's counters or batches) and the freshness fields beside the counters.
"""

from __future__ import annotations

from typing import Any, cast

from processors.store import keys
from processors.store.client import Store, token_hash

#: What a conditional read needs of the stats hash: no counter among them.
HEAD = ("org", "rev", "applied_at_ms", "last_event_ms")


async def stats(store: Store, token: str, campaign_id: str) -> tuple[str | None, dict[str, str]]:
    """The token's organization and the campaign's whole stats hash, in one round trip."""
    pipe = store.client.pipeline(transaction=False)
    pipe.hget(keys.TOKENS, token_hash(token))
    pipe.hgetall(keys.stats(campaign_id))
    org, fields = await pipe.execute()
    return cast(str | None, org), cast(dict[str, str], fields)


async def head(
    store: Store, token: str, campaign_id: str, batch_index: tuple[str, int, int] | None = None
) -> tuple[str | None, dict[str, str], list[str]]:
    """The token's organization, the head of the stats hash and, when asked, one page of a
    batch index (key, skip, limit) read after the revision: one round trip."""
    pipe = store.client.pipeline(transaction=False)
    pipe.hget(keys.TOKENS, token_hash(token))
    pipe.hmget(keys.stats(campaign_id), HEAD)
    if batch_index is not None:
        index, skip, limit = batch_index
        pipe.zrange(index, skip, skip + limit - 1)
    org, values, *page = await pipe.execute()
    fields = {name: value for name, value in zip(HEAD, values, strict=True) if value is not None}
    return cast(str | None, org), fields, cast(list[str], page[0] if page else [])


async def batch_ids(store: Store, index: str, skip: int, limit: int) -> list[str]:
    """One page of a batch index."""
    return cast(list[str], await store.client.zrange(index, skip, skip + limit - 1))


async def batch_hashes(store: Store, campaign_id: str, batch_ids: list[str]) -> list[Any]:
    """The hashes of the given batches, in one round trip."""
    if not batch_ids:
        return []
    pipe = store.client.pipeline(transaction=False)
    for batch_id in batch_ids:
        pipe.hgetall(keys.batch(campaign_id, batch_id))
    rows: list[Any] = await pipe.execute()
    return rows
