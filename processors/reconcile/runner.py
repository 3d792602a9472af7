"""Reconciliation: recompute every campaign from the source, report drift, repair it.

Correct while the worker keeps running, because every repair is one of three atomic
scripts whose effects commute with the worker's:

1. entities the source has in a newer version than Redis (lost writes, FLUSHALL, lost
   batch metadata) are re-applied through APPLY_SLICE in repair mode -- the same
   version-checked transition the worker runs, so a concurrent newer event wins either
   way and no update is lost or counted twice;
2. entities Redis has and the source does not are removed with their counter deltas, but
   only while the campaign's fences show the worker has applied nothing beyond the offsets
   the source was read to (otherwise they may be new: deferred to the next run);
3. RECOUNT recounts every counter and index of the campaign from its entity state in one
   atomic call and corrects what differs (hand-edited or deleted counters).

The report shows only real drift, judged at a consistent cut although the worker keeps
applying events past the offsets the source was read to:

- An entity older in Redis than in the source is judged once the worker has applied
  everything the source read for the campaign (its fences, or the consumer group's
  committed offsets, passed the last offsets read; waited for a while) and it is read
  again: versions in Redis only grow, so one still older was really lost. If the worker
  does not get there in time, such entities are in flight (lag, not drift): repaired all
  the same, reported as `entities_in_flight`.
- A repair counts only when its version check applied it: if the worker applied a newer
  event meanwhile (STALE), nothing was missing.
- Counter fields are judged by a RECOUNT taken before any repair, which compares every
  counter with the entity state in one atomic script, so events applied meanwhile cannot
  make a difference; a repair run recounts again after its repairs to correct them,
  unless that first recount found every counter right (the repairs write states and
  counters together; a counter edited by hand while a run repairs waits for the next). A
  counter should be what the state found implies (a lost write or an older copy of Redis
  loses state and counters alike), or -- when entity states were deleted on their own
  and left their counts behind -- what the state implies with the missing entities
  restored and the extra ones removed: whichever leaves fewer counters drifted in the
  campaign (the first on a tie). An entity Redis holds in an older version never
  explains a counter, so a hand edit is reported even when the run's repair of that
  entity moves the same counter by as much (`field_drift`).
- An entity Redis has and the source lacks counts only once it is certain not to be newer
  than the read (the removal went through, or in a dry run could have).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from processors.domain.contract import APPLIED, TENANT_MISMATCH, Rejection
from processors.domain.events import parse
from processors.domain.transitions import (
    CampaignState,
    apply,
    unpack_contact,
    unpack_record,
)
from processors.reconcile.plan import (
    Census,
    Effects,
    Offsets,
    Plan,
    Snapshot,
    applied_through,
    behind,
    census_of,
    field_drift,
    is_counter,
    meta_drift,
    plan,
    record_behind,
    version_of,
)
from processors.reconcile.report import (
    CampaignReport,
    Report,
)
from processors.reconcile.source import Source
from processors.store import keys
from processors.store.client import Store
from processors.store.keys import digest
from processors.store.slices import encode_repair

log = logging.getLogger(__name__)

REPAIR_CHUNK = 1000
#: Up to this many entities behind are read again one by one (LOOKUP); more, by bucket.
RECHECK_BY_LOOKUP = 2000
#: How long a run waits for the worker to apply what the source read, and how often it looks.
CATCH_UP_SECONDS = 10.0
CATCH_UP_POLL = 0.2


class WorkerProgress:
    """Whether the worker has applied everything the source read for a campaign.

    Its fences for the campaign advance with every applied slice (milliseconds behind the
    log); the consumer group's commits follow once a second and also cover a campaign whose
    fences were lost. A campaign behind is waited for, up to a deadline shared by the run.
    """

    def __init__(self, store: Store, source: Source, last: dict[str, Offsets], seconds: float):
        self.store = store
        self.source = source
        self.last = last
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds
        self._committed: Offsets = {}  # only grows: an old reading is a safe lower bound

    async def caught_up(self, campaign_id: str) -> bool:
        """Whether the worker applied every record read for the campaign (waits a while)."""
        last = self.last.get(campaign_id, {})
        while True:
            (fence,) = await self.store.fence_offsets([campaign_id])
            if applied_through(last, fence, self._committed):
                return True
            if time.monotonic() >= self.deadline:
                log.warning(
                    "the worker has not applied what was read for %s within %.0f s of the "
                    "read: its differences are reported as in flight, not drift",
                    campaign_id,
                    self.seconds,
                )
                return False
            self._committed = await self.source.committed()
            if applied_through(last, fence, self._committed):
                return True
            await asyncio.sleep(CATCH_UP_POLL)


class Reconciler:
    """Reads the source, compares with Redis, repairs (unless dry-run), stores reports."""

    def __init__(
        self,
        store: Store,
        source: Source,
        *,
        max_message_bytes: int = 64 * 1024,
        catch_up_seconds: float = CATCH_UP_SECONDS,
    ):
        self.store = store
        self.source = source
        self.max_message_bytes = max_message_bytes
        self.catch_up_seconds = catch_up_seconds

    async def expected(
        self, campaign: str | None, report: Report, progress: Callable[[int, int], None] | None
    ) -> tuple[dict[str, CampaignState], dict[str, Offsets]]:
        """Fold the source into per-campaign states (owners already in Redis are kept), and
        note the last offset read per campaign and partition."""
        states: dict[str, CampaignState] = {}
        last: dict[str, Offsets] = {}
        async for records in self.source.read(progress):
            events = []
            for record in records:
                report.events_read += 1
                parsed = parse(record.value, max_bytes=self.max_message_bytes)
                if isinstance(parsed, Rejection):
                    report.invalid_skipped += 1
                elif campaign is None or parsed.campaign_id == campaign:
                    events.append(parsed)
                    tp = f"{record.topic}:{record.partition}"
                    last.setdefault(parsed.campaign_id, {})[tp] = record.offset
            new = sorted({e.campaign_id for e in events} - set(states))
            for campaign_id in new:
                states[campaign_id] = CampaignState(
                    organization_id=await self.store.campaign_owner(campaign_id)
                )
            for event in events:
                apply(states[event.campaign_id], event)
        return states, last

    async def run(
        self,
        *,
        campaign: str | None = None,
        dry_run: bool = False,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> Report:
        """One full reconciliation."""
        started = time.monotonic()
        report = Report(dry_run=dry_run)

        def read_progress(done: int, total: int) -> None:
            if progress:
                progress("reading the event log", done, total)

        states, last = await self.expected(campaign, report, read_progress)
        if campaign is not None and campaign not in states:
            states[campaign] = CampaignState(await self.store.campaign_owner(campaign))
        worker = WorkerProgress(self.store, self.source, last, self.catch_up_seconds)
        for n, (campaign_id, state) in enumerate(sorted(states.items()), start=1):
            report.campaigns.append(await self.campaign(campaign_id, state, dry_run, worker))
            if progress:
                progress("checking campaigns", n, len(states))
        report.duration_seconds = time.monotonic() - started
        return report

    async def campaign(
        self,
        campaign_id: str,
        state: CampaignState,
        dry_run: bool,
        worker: WorkerProgress | None = None,
    ) -> CampaignReport:
        """Compare and repair one campaign."""
        started = time.monotonic()
        report = CampaignReport(campaign_id, state.organization_id, dry_run)
        snap = await self._snapshot(campaign_id, state)
        todo = plan(state, snap)
        if (todo.batches or todo.contacts or todo.records) and worker is not None:
            # Behind in Redis: lost, or not applied yet? Only once the worker has applied
            # what the source read can a state still behind be called lost.
            report.worker_caught_up = await worker.caught_up(campaign_id)
            if report.worker_caught_up:
                todo = await self._recheck(campaign_id, snap, todo)
        caught_up = report.worker_caught_up
        report.fields += meta_drift(state, snap.batches)
        named = set(snap.batches) | snap.named_batches()
        # Counters are judged against entity state as RECOUNT finds both before any repair
        # (one atomic cut); a repair run recounts again after its repairs to correct them
        # when that first recount found anything to correct.
        after: Census | None = None
        effects = Effects(snap)
        if dry_run:
            before = await self._census(campaign_id, named, dry_run=True)
            done, removed = todo, await self._removable(campaign_id, todo.extra)
            effects.add(done, removed)
        else:
            repairs = todo.batches or todo.contacts or todo.records or todo.extra
            early = await self._census(campaign_id, named, dry_run=True) if repairs else None
            if state.organization_id:
                await self.store.ensure_owner(campaign_id, state.organization_id)
            done = await self._repair(campaign_id, state, todo, report, effects)
            removed = await self._remove(campaign_id, todo.extra)
            effects.add(removed=removed)
            if early is not None and not (early.fixes or early.migrated):
                # every counter matched the entity state before the repairs, which wrote
                # states and counters together: a correcting recount would find nothing
                before = early
            else:
                after = await self._census(campaign_id, named, dry_run=False)
                # nothing to repair: the correcting recount saw it all as it was
                before = early if early is not None else after
        touched, lost = effects.totals()
        report.fields += field_drift(before, after, lost, touched=touched)
        self._count_entities(report, snap, done, caught_up)
        report.entities_extra = len(removed)
        report.extra_unconfirmed = len(todo.extra) - len(removed)
        report.extra_deferred = report.extra_unconfirmed > 0
        report.batches_migrated = before.migrated
        report.recount_fixes = (after or before).fixes
        if not dry_run:
            await self._after_repair(campaign_id, state, report, done, removed)
        report.finished_at = time.time()
        report.duration_seconds = round(time.monotonic() - started, 3)
        await self.store.client.set(keys.reconciliation(campaign_id), json.dumps(report.to_dict()))
        return report

    @staticmethod
    def _count_entities(
        report: CampaignReport, snap: Snapshot, done: Plan, caught_up: bool
    ) -> None:
        """Missing / stale when the worker had caught up (really lost), else in flight; a
        call record stored before time series, in the same version, is an upgrade step."""
        records = []
        for eid, record in done.records:
            stored = snap.records.get(digest(eid))
            if stored is not None and unpack_record(stored).version == record.version:
                report.records_upgraded += 1
            else:
                records.append(stored is not None)
        found = [
            *(digest(cid) in snap.contacts for cid, _ in done.contacts),
            *records,
            *("s" in snap.batches.get(bid, {}) for bid, _ in done.batches),
        ]
        if not caught_up:
            report.entities_in_flight = len(found)
            return
        report.entities_stale = sum(found)
        report.entities_missing = len(found) - report.entities_stale

    async def _after_repair(
        self,
        campaign_id: str,
        state: CampaignState,
        report: CampaignReport,
        done: Plan,
        removed: list[tuple[str, str]],
    ) -> None:
        """Fill in `corrected`, count the fixes, register the campaign, wake its streams."""
        await self._fill_corrected(campaign_id, report)
        # a counter is set to what the repaired state implies; metadata stays as it was
        fixed_fields = sum(
            1
            for d in report.fields
            if d.corrected is not None
            and (d.corrected == d.expected or is_counter(d.scope, d.field))
        )
        report.fixed = report.entities_missing + report.entities_stale + len(removed)
        report.fixed += fixed_fields
        if state.organization_id:
            await self.store.register_campaigns({campaign_id: state.organization_id})
        applied = len(done.batches) + len(done.contacts) + len(done.records)
        if applied or removed or report.recount_fixes or report.batches_migrated:
            # The worker announces only what it applies: without this, open streams would
            # show the drifted numbers until the campaign's next event.
            owner = state.organization_id
            await self.store.announce([campaign_id], {campaign_id: owner} if owner else None)

    async def _recheck(self, campaign_id: str, snap: Snapshot, todo: Plan) -> Plan:
        """Read the entities found behind again (the snapshot is updated): those the worker
        applied meanwhile are no longer behind."""
        moved = True
        if len(todo.contacts) + len(todo.records) > RECHECK_BY_LOOKUP:
            # most of the campaign: reading its buckets again is cheaper than looking up
            contacts, records = await self.store.entity_states(campaign_id)
            moved = any(snap.contacts.get(d) != v for d, v in contacts.items()) or any(
                snap.records.get(d) != v for d, v in records.items()
            )
            snap.contacts.update(contacts)
            snap.records.update(records)
        else:
            for stored, kind, items in (
                (snap.contacts, "c", todo.contacts),
                (snap.records, "r", todo.records),
            ):
                digests = [digest(i) for i, _ in items]
                values = await self.store.lookup(campaign_id, kind, digests)
                stored.update((d, v) for d, v in zip(digests, values, strict=True) if v is not None)
        rows = await self.store.batch_states(campaign_id, [bid for bid, _ in todo.batches])
        snap.batches.update((bid, row) for (bid, _), row in zip(todo.batches, rows, strict=True))
        batches = [(bid, b) for bid, b in todo.batches if version_of(snap.batches[bid]) < b.version]
        if not moved:  # no state changed meanwhile: the same ones are behind
            return Plan(batches, todo.contacts, todo.records, todo.extra)
        return Plan(
            batches=batches,
            contacts=[
                (cid, c)
                for cid, c in todo.contacts
                if behind(snap.contacts.get(digest(cid)), c.version, unpack_contact)
            ],
            records=[
                (eid, r)
                for eid, r in todo.records
                if record_behind(snap.records.get(digest(eid)), r.version)
            ],
            extra=todo.extra,
        )

    async def _snapshot(self, campaign_id: str, state: CampaignState) -> Snapshot:
        batch_ids = sorted(set(await self.store.batch_ids(campaign_id)) | set(state.batches))
        rows = await self.store.batch_states(campaign_id, batch_ids)
        contacts, records = await self.store.entity_states(campaign_id)
        return Snapshot(
            batches=dict(zip(batch_ids, rows, strict=True)), contacts=contacts, records=records
        )

    async def _repair(
        self,
        campaign_id: str,
        state: CampaignState,
        todo: Plan,
        report: CampaignReport,
        effects: Effects,
    ) -> Plan:
        """Re-apply by version; what the version check really applied, also added to
        `effects` chunk by chunk while the next chunk runs in Redis.

        Batches first, so that a contact re-applied into a lost batch finds it restored.
        """
        org = state.organization_id or ""
        applied = Plan([], [], [], [])
        kinds: tuple[tuple[str, list[Any], list[Any]], ...] = (
            ("batches", todo.batches, applied.batches),
            ("contacts", todo.contacts, applied.contacts),
            ("records", todo.records, applied.records),
        )
        for kind, items, kept in kinds:

            def encode(chunk: list[Any], kind: str = kind) -> tuple[list[str], list[str]]:
                return encode_repair(campaign_id, org, **{kind: chunk})

            def confirmed(
                chunk: list[Any], codes: list[int], kind: str = kind, kept: list[Any] = kept
            ) -> None:
                done = [item for item, code in zip(chunk, codes, strict=True) if code == APPLIED]
                report.tenant_conflicts += codes.count(TENANT_MISMATCH)
                effects.add(Plan.only(kind, done))
                kept.extend(done)

            await self._apply_chunks(encode, items, confirmed)
        return applied

    async def _apply_chunks(
        self,
        encode: Callable[[list[Any]], tuple[list[str], list[str]]],
        items: list[Any],
        confirmed: Callable[[list[Any], list[int]], None],
    ) -> None:
        """APPLY_SLICE over `items` chunk by chunk, in order: a chunk is encoded, and the
        outcome codes of the one before are handed to `confirmed`, while the one before
        or this one runs in Redis."""
        chunks = list(_chunks(items, REPAIR_CHUNK))
        await self.store.apply_in_turn(
            (encode(chunk) for chunk in chunks),
            lambda index, codes: confirmed(chunks[index], codes),
        )

    async def _remove(
        self, campaign_id: str, extra: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """REMOVE_ENTITIES chunk by chunk; what was removed (a refused chunk removes nothing)."""
        ends = self.source.ends
        removed: list[tuple[str, str]] = []
        for chunk in _chunks(extra, REPAIR_CHUNK):
            if await self.store.remove_entities(campaign_id, ends, chunk) < 0:
                break  # the worker is past the read: the rest waits for a later run
            removed += chunk
        return removed

    async def _removable(
        self, campaign_id: str, extra: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """Dry run: the extra entities a removal would take, by REMOVE_ENTITIES's own rule
        (no fence at or past the offsets read). Fences read after the entities: whatever
        was read came from before the ends if they are still short of them."""
        if not extra:
            return []
        (fence,) = await self.store.fence_offsets([campaign_id])
        ends = self.source.ends
        ahead = any(f not in ends or offset >= ends[f] for f, offset in fence.items())
        return [] if ahead else extra

    async def _census(self, campaign_id: str, known: set[str], *, dry_run: bool) -> Census:
        """A census recount (correcting unless dry) of the campaign, chunked: exact at
        the instant it ends although the worker keeps applying."""
        quads = await self.store.recount(campaign_id, sorted(known), dry_run=dry_run, census=True)
        return census_of(quads)

    async def _fill_corrected(self, campaign_id: str, report: CampaignReport) -> None:
        """Metadata is only reported: `corrected` is what the batch holds after the run."""
        rows: dict[str, dict[str, str]] = {}
        for drift in report.fields:
            if drift.corrected is not None or not drift.scope.startswith("batch:"):
                continue
            bid = drift.scope.split(":", 1)[1]
            if bid not in rows:
                rows[bid] = (await self.store.batch_states(campaign_id, [bid]))[0]
            drift.corrected = rows[bid].get(drift.field)


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
