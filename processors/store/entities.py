"""Entity state and recounts, for reconciliation and migration: lookups, removals, the
chunked recount and its comparisons, the move from the fixed layout."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable
from typing import cast

from processors import StoreUnavailable
from processors.store import keys
from processors.store.base import StoreBase
from processors.store.lua import (
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

#: Entities one recount call reads at most (a call record with recent time-series buckets
#: costs about 20 us to count, a contact 2 us: 20 ms at most on an idle core), and
#: how long an abandoned recount's shadow outlives its last call.
RECOUNT_BUDGET = 1_000
RECOUNT_TTL_MS = 60_000
#: Batches one RECOUNT_BATCHES call compares at most, and series hashes one RECOUNT_SERIES.
RECOUNT_BATCH_CHUNK = 200
RECOUNT_SERIES_CHUNK = 20


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


class Entities(StoreBase):
    """What reconciliation and migration read and repair beyond the counters."""

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
