"""Each organization's rollup, kept per API process: the counters of all its campaigns
summed, refreshed from the campaigns the workers announced as changed.

A read costs the token and the organization's change counts (`keys.org_changes`: `#`,
the sum, and `#life`); while `#` stays, the kept body answers. When it moved, the counts of
every campaign are read and only the campaigns whose count moved are read again, so a
rollup over a thousand campaigns costs what the changed ones cost. The campaigns live in
slots of their own on Redis Cluster and the counts in the organization's: no script spans
them, and none needs to. Each campaign's counters are read whole from its stats hash (one
HGETALL: consistent in itself) after the count that announced the change, so the rollup
is exact once the announcements have caught up with the applies: the worker announces
after each apply, again on a replay after a crash, and a repair announces what it
changed. A change made by hand outside both shows at the next full read, at most
`FULL_READ_SECONDS` later.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from api import reads
from processors.domain.rollup import Rollup, bucket_sums, counters_of, org_stats_view
from processors.domain.timeseries import window_range, window_view
from processors.store import keys
from processors.store.client import Store, token_hash

#: Every campaign is read again at least this often (a change made outside the workers).
FULL_READ_SECONDS = 60.0


@dataclass
class _Org:
    life: str | None = None
    total: str | None = None  # `#` when the rollup was last brought up to date
    seen: dict[str, str] = field(default_factory=dict)  # campaign -> its count then
    rollup: Rollup = field(default_factory=Rollup)
    campaigns: int = 0
    full_at: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: per window length: the life of the counts and the span it was read in, and per
    #: campaign (its count when read, its six sums)
    windows: dict[
        int, tuple[tuple[str | None, tuple[int, int]], dict[str, tuple[str | None, list[int]]]]
    ] = field(default_factory=dict)
    window_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Rollups:
    """The rollups of the organizations this process was asked about."""

    def __init__(self, full_read_seconds: float = FULL_READ_SECONDS) -> None:
        self.full_read_seconds = full_read_seconds
        self._orgs: dict[str, _Org] = {}

    async def head(self, store: Store, token: str) -> tuple[str | None, str | None, str | None]:
        """The token's organization, then its rollup's life and `#`: two round trips."""
        (org,) = await reads.round_trip(store, ("HGET", keys.TOKENS, token_hash(token)))
        if org is None:
            return None, None, None
        (counts,) = await reads.round_trip(
            store, ("HMGET", keys.org_changes(org), keys.CHANGES_LIFE, keys.CHANGES_SUM)
        )
        return org, counts[0], counts[1]

    async def body(
        self, store: Store, org: str, life: str | None, total: str | None,
        minutes: int | None = None, now_ms: int = 0,
    ) -> dict[str, Any]:  # fmt: skip
        """The rollup at (`life`, `total`) or later, with the window figures when asked."""
        state = self._orgs.setdefault(org, _Org())
        async with state.lock:
            full = time.monotonic() - state.full_at >= self.full_read_seconds
            if full or (state.life, state.total) != (life, total):
                await self._bring_up_to_date(store, org, state, life, total, full)
            body = org_stats_view(org, state.campaigns, state.rollup.sums)
            seen = {c: state.seen.get(c) for c in state.rollup.per_campaign}
            seen_life = state.life
        if minutes is not None:
            async with state.window_lock:  # plain reads do not wait for a window's
                body["window"] = await self._window(store, state, seen_life, seen, minutes, now_ms)
        return body

    async def _bring_up_to_date(
        self, store: Store, org: str, state: _Org, life: str | None, total: str | None,
        full: bool,
    ) -> None:  # fmt: skip
        counts, members = await reads.round_trip(
            store, ("HGETALL", keys.org_changes(org)), ("SMEMBERS", keys.org_campaigns(org))
        )
        counts = reads.as_dict(counts)
        campaigns = set(members)
        if full or state.life != life:
            changed = sorted(campaigns)
        else:
            changed = sorted(c for c in campaigns if counts.get(c) != state.seen.get(c))
        rows = await store.hashes([keys.stats(c) for c in changed])
        for campaign_id, row in zip(changed, rows, strict=True):
            state.rollup.put(campaign_id, counters_of(row))
        state.rollup.keep_only(campaigns)
        state.seen = {c: counts[c] for c in campaigns if c in counts}
        state.campaigns = len(campaigns)
        if state.life != life:
            state.windows.clear()  # a new life of the counts: the old ones mean nothing
        state.life, state.total = life, total
        if full:
            state.full_at = time.monotonic()

    async def _window(
        self, store: Store, state: _Org, life: str | None, seen: dict[str, str | None],
        minutes: int, now_ms: int,
    ) -> Any:  # fmt: skip
        """The window over every campaign: each campaign's six sums are kept per window
        length and read again when its count moved or the window moved on a minute. The
        counts mean something only within one life of the change counts (`life`, read with
        `seen`): sums kept under another life are never reused, whichever read started
        first."""
        span = window_range(minutes, now_ms)
        kept_at, kept = state.windows.pop(minutes, ((life, span), {}))
        if kept_at != (life, span):
            kept = {}
        state.windows[minutes] = ((life, span), kept)  # the most recent length last
        while len(state.windows) > WINDOW_LENGTHS_KEPT:
            del state.windows[next(iter(state.windows))]
        stale = [c for c in seen if c not in kept or kept[c][0] != seen[c]]
        for campaign_id, buckets in (await store.series_of(stale, "m", *span)).items():
            kept[campaign_id] = (seen[campaign_id], bucket_sums(buckets))
        for campaign_id in [c for c in kept if c not in seen]:
            del kept[campaign_id]
        totals = [sum(sums[i] for _, sums in kept.values()) for i in range(6)]
        return window_view(minutes, now_ms, {span[0]: totals})


#: Window lengths kept per organization (the dashboards' few).
WINDOW_LENGTHS_KEPT = 8
