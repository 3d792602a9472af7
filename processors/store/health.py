"""Worker health as the API's /readyz reads it: consumer lag and stuck partitions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from contextlib import suppress
from typing import Any, cast

from processors.store import keys
from processors.store.base import StoreBase

#: Workers report lag about once a second; an entry this old is from a partition nobody
#: reports any more (revoked, or its worker died).
LAG_TTL_SECONDS = 30.0

#: A stuck-partition report older than this is from a worker that died or moved on.
STUCK_TTL_SECONDS = 30.0


class Health(StoreBase):
    """Lag and stuck partitions, as the workers report them."""

    def __init__(self, client: Any, *, lag_ttl: float = LAG_TTL_SECONDS) -> None:
        super().__init__(client)
        self.lag_ttl = lag_ttl
        self._lag_pruned_ms = 0

    # -- consumer lag (for /readyz) -----------------------------------------------------
    #
    # One hash, `topic:partition` -> `lag:written_at_ms`, the time taken from Redis (TIME)
    # so that the clocks of worker and API hosts never matter. An entry not refreshed for
    # `lag_ttl` seconds is ignored by readers: a partition that moved to another worker,
    # or whose worker died, stops being reported without anyone having to clean up. A
    # per-field expiry (HEXPIRE) would do the same but needs Redis 7.4 / valkey 9; this
    # works on Redis 7 and Cluster (one key, one slot).

    async def set_lag(self, lag: dict[str, int]) -> None:
        """Consumer lag per `topic:partition`, for /readyz; each entry expires unless refreshed."""
        now = await self._now_ms()
        if lag:
            entries = {field: f"{value}:{now}" for field, value in lag.items()}
            await self.client.hset(keys.LAG, mapping=cast(Any, entries))
        if now - self._lag_pruned_ms >= self.lag_ttl * 1000:
            self._lag_pruned_ms = now
            await self._prune_lag(now)

    async def _prune_lag(self, now: int) -> None:
        """Delete expired entries (readers ignore them already; this only frees memory).

        Not atomic with other writers: an entry refreshed between the read and the HDEL is
        lost until its worker's next report, a second later -- and only if it had already
        gone unrefreshed for a whole TTL.
        """
        raw = cast(dict[str, str], await self.client.hgetall(keys.LAG))
        expired = [f for f, value in raw.items() if self._lag_entry(value, now) is None]
        if expired:
            await self.client.hdel(keys.LAG, *expired)

    def _lag_entry(self, value: str, now: int) -> int | None:
        """The lag an entry reports, or None when it expired (or predates timestamps)."""
        lag, sep, written = value.partition(":")
        try:
            if sep and now - int(written) <= self.lag_ttl * 1000:
                return int(lag)
        except ValueError:
            pass
        return None

    async def drop_lag(self, partitions: Iterable[str]) -> None:
        """Forget the lag of partitions this worker no longer owns (on revocation)."""
        fields = list(partitions)
        if fields:
            await self.client.hdel(keys.LAG, *fields)

    async def lag(self) -> dict[str, int]:
        """Consumer lag per `topic:partition`, from entries refreshed within `lag_ttl`."""
        now = await self._now_ms()
        raw = cast(dict[str, str], await self.client.hgetall(keys.LAG))
        fresh = {field: self._lag_entry(value, now) for field, value in raw.items()}
        return {field: lag for field, lag in fresh.items() if lag is not None}

    # -- stuck partitions (for /readyz) --------------------------------------------------
    #
    # `topic:partition` -> JSON of the batch a worker cannot decode (offset, reason, since,
    # retries) and `reported_ms` (Redis's clock). Workers refresh their entries every second
    # while stuck and delete them on recovery or revocation; an entry not refreshed within
    # STUCK_TTL_SECONDS is ignored (its worker died or lost the partition).

    async def set_stuck(self, stuck: Mapping[str, Mapping[str, Any]]) -> None:
        """Report partitions stuck before an undecodable batch."""
        if stuck:
            now = await self._now_ms()
            entries = {
                field: json.dumps({**info, "reported_ms": now}) for field, info in stuck.items()
            }
            await self.client.hset(keys.STUCK, mapping=cast(Any, entries))

    async def drop_stuck(self, partitions: Iterable[str]) -> None:
        """These partitions are no longer stuck (recovered, or revoked from this worker)."""
        fields = list(partitions)
        if fields:
            await self.client.hdel(keys.STUCK, *fields)

    async def stuck(self) -> dict[str, dict[str, Any]]:
        """Partitions stuck before an undecodable batch, from fresh reports."""
        now = await self._now_ms()
        raw = cast(dict[str, str], await self.client.hgetall(keys.STUCK))
        fresh: dict[str, dict[str, Any]] = {}
        for field, value in raw.items():
            with suppress(ValueError, TypeError, KeyError, AttributeError):
                info = json.loads(value)
                if now - int(info.pop("reported_ms")) <= STUCK_TTL_SECONDS * 1000:
                    fresh[field] = info
        return fresh
