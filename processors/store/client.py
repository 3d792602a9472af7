"""Redis I/O: apply slices through APPLY_SLICE, read counters, tokens, partition markers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from functools import cache
from typing import Any, cast

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisError

from processors import StoreUnavailable
from processors.domain.contract import BATCH_STATUSES
from processors.domain.views import batch_view, stats_view
from processors.settings import Settings
from processors.store import keys
from processors.store.lua import (
    APPLY_SLICE,
    LOOKUP,
    MIGRATE_STATES,
    RECOUNT_BATCHES,
    RECOUNT_BEGIN,
    RECOUNT_END,
    RECOUNT_SERIES,
    RECOUNT_STEP,
    REMOVE_ENTITIES,
    campaign_keys,
)
from processors.store.slices import Slice, encode

Client = aioredis.Redis | RedisCluster


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


#: Workers report lag about once a second; an entry this old is from a partition nobody
#: reports any more (revoked, or its worker died).
LAG_TTL_SECONDS = 30.0


#: Entities one recount call reads at most (a call record with recent time-series buckets
#: costs about 20 us to count, a contact 2 us: 20 ms at most on an idle core), and
#: how long an abandoned recount's shadow outlives its last call.
RECOUNT_BUDGET = 1_000
RECOUNT_TTL_MS = 60_000
#: Batches one RECOUNT_BATCHES call compares at most, and series hashes one RECOUNT_SERIES.
RECOUNT_BATCH_CHUNK = 200
RECOUNT_SERIES_CHUNK = 20

#: A stuck-partition report older than this is from a worker that died or moved on.
STUCK_TTL_SECONDS = 30.0


def token_hash(token: str) -> str:
    """Tokens are stored as their SHA-256 only."""
    return hashlib.sha256(token.encode()).hexdigest()


def _with_batch_id(packed: str, by_number: dict[str, str]) -> str:
    """A contact state with its batch number replaced by the batch id (and without the
    minute a terminal state carries for batch progress: reconciliation compares states)."""
    version, code, retry, number, *_ = packed.split("|")
    return f"{version}|{code}|{retry}|{by_number.get(number, '')}"


def kept_series(now_ms: int) -> set[str]:
    """Every series hash still within retention up to the next hour (`m<hour>`, `q<day>`):
    compared by every recount whether the index lists it or not."""
    hour, day = now_ms // 3_600_000, now_ms // 86_400_000
    hours = keys.MINUTE_RETENTION_MS // 3_600_000 + 1
    days = keys.QUARTER_RETENTION_MS // 86_400_000 + 1
    return {f"m{h}" for h in range(hour - hours, hour + 2)} | {
        f"q{d}" for d in range(day - days, day + 2)
    }


def _index_adjustments(quads: list[str]) -> dict[str, int]:
    """How the status indexes' sizes would change by the index drift a dry RECOUNT_BATCHES
    reported: an entry absent that should be present, or the reverse; a batch that would
    go (known only from contacts none names) leaves its status's index."""
    adjust: dict[str, int] = {}
    for n in range(0, len(quads), 4):
        scope, field, found, expected = quads[n : n + 4]
        if scope.startswith("index:") and field != "all":
            if (found, expected) == ("absent", "present"):
                adjust[field] = adjust.get(field, 0) + 1
            elif (found, expected) == ("present", "absent"):
                adjust[field] = adjust.get(field, 0) - 1
        elif field == "s" and expected == "" and found:
            adjust[found] = adjust.get(found, 0) - 1
    return adjust


#: Decodes the store's own decimal fields and `|`-joined numbers, many at a time.
_INTS = msgspec.json.Decoder(list[int])


def _series_row(row: dict[str, str]) -> list[tuple[int, tuple[int, ...]]]:
    """A series hash's (slot, six numbers) pairs: fields and values parsed at once (1,440
    buckets a day) when every value is six `|`-joined parts, else field by field. A field
    that is not a slot with six integers (an edit by hand) is left out: it never shifts
    another bucket's numbers, and the recount (RECOUNT_SERIES) puts it right."""
    if not row:
        return []
    if all(value.count("|") == 5 for value in row.values()):
        try:
            slots = _INTS.decode(f"[{','.join(row)}]")
            values = _INTS.decode(f"[{','.join(row.values())}]".replace("|", ","))
        except msgspec.DecodeError:
            pass
        else:
            if len(slots) == len(row) and len(values) == 6 * len(row):
                return [(slot, tuple(values[6 * i : 6 * i + 6])) for i, slot in enumerate(slots)]
    out: list[tuple[int, tuple[int, ...]]] = []
    for field, value in row.items():
        with suppress(ValueError):
            numbers = tuple(int(part) for part in value.split("|"))
            if len(numbers) == 6:
                out.append((int(field), numbers))
    return out


class Store:
    """Every read and write dialer-stats makes against Redis."""

    def __init__(self, client: Client, *, lag_ttl: float = LAG_TTL_SECONDS) -> None:
        self.client = client
        self.lag_ttl = lag_ttl
        self._lag_pruned_ms = 0

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

            async def one(call_keys: list[str], argv: list[str]) -> Any:
                try:
                    return await self.client.evalsha(sha, len(call_keys), *call_keys, *argv)
                except NoScriptError as exc:
                    return exc

            return list(await asyncio.gather(*(one(k, a) for k, a in calls)))
        pipe = self.client.pipeline(transaction=False)
        for call_keys, argv in calls:
            pipe.evalsha(sha, len(call_keys), *call_keys, *argv)
        try:
            return list(await pipe.execute(raise_on_error=False))
        except RedisError as exc:
            raise StoreUnavailable(f"Redis is unavailable: {exc}") from exc

    async def announce(
        self, campaign_ids: Iterable[str], owners: Mapping[str, str] | None = None
    ) -> None:
        """Tell live subscribers (the API's streams) that these campaigns changed, and
        count the change for their organization's rollup (`owners`: campaign -> org).

        The campaign's count goes up before the organization's `#`: a reader that saw `#`
        move sees the campaign's count moved too. A replayed slice announces again, so a
        crash between the apply and this leaves the rollup behind only until the replay."""
        pipe = self.client.pipeline(transaction=False)
        for campaign_id in campaign_ids:
            pipe.publish(keys.updates_channel(campaign_id), "1")
        for campaign_id, org in (owners or {}).items():
            key = keys.org_changes(org)
            pipe.hincrby(key, campaign_id, 1)
            pipe.hsetnx(key, "life", secrets.token_hex(8))
            pipe.hincrby(key, "#", 1)
        await pipe.execute()

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

    async def _now_ms(self) -> int:
        seconds, micros = await self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

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
        index = keys.batch_index(campaign_id, status)
        batch_ids = cast(list[str], await self.client.zrange(index, skip, skip + limit - 1))
        if not batch_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for batch_id in batch_ids:
            pipe.hgetall(keys.batch(campaign_id, batch_id))
        rows = await pipe.execute()
        return [
            batch_view(campaign_id, batch_id, row)
            for batch_id, row in zip(batch_ids, rows, strict=True)
        ]

    async def org_campaigns(self, organization_id: str) -> list[str]:
        """Campaign ids owned by an organization, sorted."""
        members = await self.client.smembers(keys.org_campaigns(organization_id))
        return sorted(cast(set[str], members))

    async def batch_ids(self, campaign_id: str) -> list[str]:
        """Every batch id listed in the campaign's index."""
        return cast(list[str], await self.client.zrange(keys.batch_index(campaign_id), 0, -1))

    async def hashes(self, names: list[str], chunk: int = 2000) -> list[dict[str, str]]:
        """HGETALL of many keys, pipelined in chunks."""
        rows: list[dict[str, str]] = []
        for start in range(0, len(names), chunk):
            pipe = self.client.pipeline(transaction=False)
            for name in names[start : start + chunk]:
                pipe.hgetall(name)
            rows.extend(await pipe.execute())
        return rows

    async def fence_offsets(self, campaign_ids: list[str]) -> list[dict[str, int]]:
        """Per campaign: `topic:partition` -> offset of the last message the worker applied."""
        rows = await self.hashes([keys.fence(c) for c in campaign_ids])
        # a fence value is `epoch:offset`
        return [{f: int(v.rpartition(":")[2]) for f, v in row.items()} for row in rows]

    async def remove_entities(
        self, campaign_id: str, ends: dict[str, int], entities: list[tuple[str, str]]
    ) -> int:
        """REMOVE_ENTITIES: `(kind, batch id or digest)`; -1 if the worker is ahead."""
        argv = [str(len(ends))]
        for field, end in ends.items():
            argv += [field, str(end)]
        for kind, entity in entities:
            argv += [kind, entity]
        return int(await self.run_script(REMOVE_ENTITIES, campaign_keys(campaign_id), argv))

    async def recount(
        self,
        campaign_id: str,
        batch_ids: Iterable[str] = (),
        *,
        dry_run: bool,
        census: bool = False,
        budget: int = RECOUNT_BUDGET,
    ) -> list[str]:
        """A chunked recount (RECOUNT_BEGIN, STEPs, RECOUNT_BATCHES, RECOUNT_END): flat
        drift quadruples.

        Each call reads at most `budget` entities or RECOUNT_BATCH_CHUNK batches, so Redis
        answers others in between; what the worker changes meanwhile is mirrored into the
        recount's shadow, so each comparison is exact at the instant of its call. `batch_ids`
        are checked besides those indexed or named by a contact. With `census`, every
        counter checked is reported, equal to what the entity state implies or not. Waits
        while another recount of the campaign runs."""
        call_keys = campaign_keys(campaign_id)
        ttl = str(RECOUNT_TTL_MS)
        mode = str(int(dry_run) + 2 * int(census))
        deadline = asyncio.get_running_loop().time() + 2 * RECOUNT_TTL_MS / 1000
        for _ in range(5):
            token = secrets.token_hex(8)
            while not int(await self.run_script(RECOUNT_BEGIN, call_keys, [token, ttl])):
                if asyncio.get_running_loop().time() > deadline:
                    raise StoreUnavailable(f"another recount of {campaign_id} keeps running")
                await asyncio.sleep(0.2)
            step = 0
            while step == 0:
                argv = [token, str(budget), ttl]
                step = int(await self.run_script(RECOUNT_STEP, call_keys, argv))
            if step > 0:
                quads = await self._compare(campaign_id, token, mode, batch_ids, dry_run)
                if quads is not None:
                    return quads
        raise StoreUnavailable(f"the recount of {campaign_id} kept being interrupted")

    async def _compare(
        self, campaign_id: str, token: str, mode: str, batch_ids: Iterable[str], dry_run: bool
    ) -> list[str] | None:
        """The comparing calls of a recount whose buckets are all counted; None when the
        recount is gone (expired, or the campaign's shadow was deleted)."""
        call_keys = campaign_keys(campaign_id)
        stats_names: list[str] = []
        batch_names: dict[str, list[str]] = {}
        series_names: dict[str, list[str]] = {}
        async for name, _ in self.client.hscan_iter(keys.shadow(campaign_id), count=1000):
            name = cast(str, name)
            number, sep, field = name.partition(">")
            if sep:
                batch_names.setdefault(number, []).append(field)
            elif name.startswith("S"):
                member, _, rest = name[1:].partition(":")
                series_names.setdefault(member, []).append(rest)
            elif name not in ("tok", "c", "r"):
                stats_names.append(name)
        numbers = list(batch_names)
        named: list[str | None] = []
        if numbers:
            layout = keys.layout(campaign_id)
            named = cast(
                list[str | None], await self.client.hmget(layout, [f"#{n}" for n in numbers])
            )
        fields_of = {b: batch_names[n] for n, b in zip(numbers, named, strict=True) if b}
        ids = set(batch_ids) | set(fields_of) | set(await self.batch_ids(campaign_id))
        indexed = await self.client.zrange(keys.series_index(campaign_id), 0, -1)
        now = await self._now_ms()  # Redis's clock, the one the scripts keep buckets by
        members = set(series_names) | set(cast(list[str], indexed)) | kept_series(now)
        out: list[str] = []
        for script, items, names, chunk in (
            (RECOUNT_BATCHES, ids, fields_of, RECOUNT_BATCH_CHUNK),
            (RECOUNT_SERIES, members, series_names, RECOUNT_SERIES_CHUNK),
        ):
            ordered = sorted(items)
            for start in range(0, len(ordered), chunk):
                argv = [token, mode, str(RECOUNT_TTL_MS)]
                for item in ordered[start : start + chunk]:
                    argv += [item, str(len(names.get(item, []))), *names.get(item, [])]
                answer = await self.run_script(script, call_keys, argv)
                if int(answer[0]) < 0:
                    return None
                out += [str(a) for a in answer[1:]]
        adjust = _index_adjustments(out) if dry_run else {}
        argv = [token, mode, str(len(adjust))]
        for status, by in adjust.items():
            argv += [status, str(by)]
        answer = await self.run_script(RECOUNT_END, call_keys, [*argv, *stats_names])
        if int(answer[0]) < 0:
            return None
        return out + [str(item) for item in answer[1:]]

    # -- time series ---------------------------------------------------------------------

    async def series(
        self, campaign_id: str, resolution: str, start_ms: int, end_ms: int
    ) -> dict[int, Sequence[int]]:
        """Buckets of call records by occurred_at, `m` (minute) or `q` (quarter hour), that
        start in [start_ms, end_ms): bucket start (ms since the epoch) -> (completed, failed,
        busy, no_answer, follow_up, talk ms). Buckets with no call are absent."""
        return (await self.series_of([campaign_id], resolution, start_ms, end_ms))[campaign_id]

    async def series_of(
        self, campaign_ids: Sequence[str], resolution: str, start_ms: int, end_ms: int
    ) -> dict[str, dict[int, Sequence[int]]]:
        """`series` of several campaigns, read in one pipeline."""
        step, span = (60_000, 3_600_000) if resolution == "m" else (900_000, 86_400_000)
        first, last = start_ms // span, (end_ms - 1) // span
        out: dict[str, dict[int, Sequence[int]]] = {c: {} for c in campaign_ids}
        if last < first or not campaign_ids:
            return out
        key = keys.minute_series if resolution == "m" else keys.quarter_series
        numbers = range(first, last + 1)
        rows = iter(await self.hashes([key(c, n) for c in campaign_ids for n in numbers]))
        for campaign_id in campaign_ids:
            buckets = out[campaign_id]
            for number in numbers:
                for slot, bucket in _series_row(next(rows)):
                    start = number * span + slot * step
                    if start_ms <= start < end_ms:
                        buckets[start] = bucket
        return out

    # -- entity state (reconciliation, migration) ----------------------------------------

    async def bucket_layout(self, campaign_id: str, kind: str) -> tuple[int, int]:
        """`(level, split)` of a campaign's contact (`c`) or record (`r`) buckets."""
        level, split = await self.client.hmget(keys.layout(campaign_id), f"{kind}:L", f"{kind}:P")
        return int(level or 0), int(split or 0)

    async def entity_key(self, campaign_id: str, kind: str, entity_digest: str) -> str:
        """The bucket an entity's state is in now (tests and tools; buckets split)."""
        level, split = await self.bucket_layout(campaign_id, kind)
        number = keys.bucket_number(keys.bucket_hash(entity_digest), level, split)
        bucket = keys.contact_bucket if kind == "c" else keys.record_bucket
        return bucket(campaign_id, number)

    async def batch_ids_by_number(self, campaign_id: str) -> dict[str, str]:
        """Batch number -> batch id, for every batch the campaign has numbered."""
        raw = cast(dict[str, str], await self.client.hgetall(keys.layout(campaign_id)))
        return {f[1:]: v for f, v in raw.items() if f.startswith("#") and len(f) > 1}

    async def entity_states(self, campaign_id: str) -> tuple[dict[str, str], dict[str, str]]:
        """Every stored contact and call record of a campaign: digest -> packed state, a
        contact's with its batch id (`version|code|retry|batch_id`, see `unpack_contact`).

        Bucket by bucket, not atomically: an entity moved by a split meanwhile may be
        missed. Reconciliation reads what it finds behind again once the worker has caught
        up; otherwise such an entity counts as in flight, and a repair run re-applies it by
        version (stale, so nothing changes)."""
        found: list[dict[str, str]] = []
        for kind, bucket in (("c", keys.contact_bucket), ("r", keys.record_bucket)):
            level, split = await self.bucket_layout(campaign_id, kind)
            names = [bucket(campaign_id, n) for n in range((1 << level) + split)]
            merged: dict[str, str] = {}
            for row in await self.hashes(names):
                merged.update(row)
            found.append(merged)
        contacts, records = found
        return self.with_batch_ids(contacts, await self.batch_ids_by_number(campaign_id)), records

    @staticmethod
    def with_batch_ids(contacts: dict[str, str], by_number: dict[str, str]) -> dict[str, str]:
        """Contact states with their batch number replaced by the batch id."""
        return {entity: _with_batch_id(packed, by_number) for entity, packed in contacts.items()}

    async def lookup(
        self, campaign_id: str, kind: str, digests: list[str], chunk: int = 1000
    ) -> list[str | None]:
        """The stored states of some contacts (`c`, with batch ids) or records (`r`)."""
        values: list[str | None] = []
        for start in range(0, len(digests), chunk):
            argv = [item for d in digests[start : start + chunk] for item in (kind, d)]
            answer = await self.run_script(LOOKUP, campaign_keys(campaign_id), argv)
            values.extend(v if v else None for v in answer)
        if kind == "c" and any(values):
            by_number = await self.batch_ids_by_number(campaign_id)
            values = [None if v is None else _with_batch_id(v, by_number) for v in values]
        return values

    async def legacy_campaigns(self) -> list[str]:
        """Campaigns with state in the fixed 16,384-bucket layout of plain ids, or whose
        migration stopped before its recount."""
        found = set(cast(set[str], await self.client.smembers(keys.MIGRATING)))
        for part in (keys.LEGACY_CONTACT_PART, keys.LEGACY_RECORD_PART):
            async for key in self.client.scan_iter(
                match=f"{keys.PREFIX}:{{*}}:{part}*", count=1000
            ):
                campaign_id, _, rest = key[len(keys.PREFIX) + 2 :].partition("}:")
                if rest[len(part) :].isdigit():
                    found.add(campaign_id)
        return sorted(found)

    async def migrate_campaign(self, campaign_id: str) -> int:
        """Move a campaign's states from the fixed layout into growing buckets, bucket by
        bucket (each atomically; the old buckets read in pipelined chunks), then recount its
        counters; returns the states moved. The campaign is listed in `keys.MIGRATING` until
        the recount is done, so an interrupted migration is found again.

        Safe while workers of the new layout run: a state they applied in the meantime is
        kept when its version is the same or newer, and the recount corrects the counters
        of an entity both layouts held for a while."""
        moved = 0
        await self.client.sadd(keys.MIGRATING, campaign_id)  # until its recount is done
        for kind in ("c", "r"):
            for start in range(0, keys.LEGACY_BUCKETS, 1024):
                numbers = range(start, min(start + 1024, keys.LEGACY_BUCKETS))
                names = [keys.legacy_bucket(campaign_id, kind, n) for n in numbers]
                for old, row in zip(names, await self.hashes(names), strict=True):
                    if not row:
                        continue
                    argv = [kind]
                    for entity_id, packed in row.items():
                        argv += [keys.digest(entity_id), entity_id, packed]
                    call_keys = [*campaign_keys(campaign_id), old]
                    moved += int(await self.run_script(MIGRATE_STATES, call_keys, argv))
        await self.recount(campaign_id, dry_run=False)
        await self.client.srem(keys.MIGRATING, campaign_id)
        return moved

    # -- tokens --------------------------------------------------------------------------

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
