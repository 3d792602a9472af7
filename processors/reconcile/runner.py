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
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from processors.domain.contract import Rejection
from processors.domain.events import parse
from processors.domain.transitions import (
    CampaignState,
    apply,
    batch_counters,
    stats_counters,
    unpack_contact,
    unpack_record,
)
from processors.reconcile.source import Source
from processors.store import keys
from processors.store.client import Store

REPAIR_CHUNK = 1000


@dataclass
class FieldDrift:
    """One counter that differed from what the source implies."""

    scope: str  # "stats" or "batch:<id>"
    field: str
    expected: int | str | None
    found: int | str | None
    corrected: int | str | None = None


@dataclass
class CampaignReport:
    """What one campaign's reconciliation found and did."""

    campaign_id: str
    organization_id: str | None
    dry_run: bool
    entities_missing: int = 0
    entities_stale: int = 0
    entities_extra: int = 0
    extra_deferred: bool = False
    tenant_conflicts: int = 0
    recount_fixes: int = 0
    fields: list[FieldDrift] = field(default_factory=list)
    finished_at: float = 0.0
    duration_seconds: float = 0.0

    @property
    def drift(self) -> int:
        """Number of differences found."""
        return self.entities_missing + self.entities_stale + self.entities_extra + len(self.fields)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (as served by the API)."""
        data = asdict(self)
        data["drift"] = self.drift
        return data


@dataclass
class Report:
    """A whole reconciliation run."""

    dry_run: bool
    events_read: int = 0
    invalid_skipped: int = 0
    campaigns: list[CampaignReport] = field(default_factory=list)
    duration_seconds: float = 0.0

    def totals(self) -> dict[str, int]:
        """Totals across campaigns."""
        return {
            "campaigns": len(self.campaigns),
            "campaigns_with_drift": sum(1 for c in self.campaigns if c.drift),
            "fields": sum(len(c.fields) for c in self.campaigns),
            "entities_missing": sum(c.entities_missing for c in self.campaigns),
            "entities_stale": sum(c.entities_stale for c in self.campaigns),
            "entities_extra": sum(c.entities_extra for c in self.campaigns),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "dry_run": self.dry_run,
            "events_read": self.events_read,
            "invalid_skipped": self.invalid_skipped,
            "duration_seconds": round(self.duration_seconds, 3),
            "totals": self.totals(),
            "campaigns": [c.to_dict() for c in self.campaigns],
        }


# -- pure ------------------------------------------------------------------------------


def field_drift(
    expected: dict[str, int], found: dict[str, str], scope: str, counter: Callable[[str], bool]
) -> list[FieldDrift]:
    """Counter fields whose stored value differs from the expected one."""
    drift = []
    names = {f for f in found if counter(f)} | set(expected)
    for name in sorted(names):
        want = expected.get(name, 0)
        have = int(found.get(name, 0) or 0)
        if want != have:
            drift.append(FieldDrift(scope, name, want, have))
    return drift


def is_stats_counter(name: str) -> bool:
    """Counter fields of the stats hash."""
    return name == "contacts" or name.startswith(("contacts:", "retry:", "calls:", "batches:"))


def is_batch_counter(name: str) -> bool:
    """Counter fields of a batch hash."""
    return name == "known" or name.startswith(("contacts:", "retry:"))


def expected_batch_meta(state: CampaignState, batch_id: str) -> dict[str, str]:
    """Metadata fields a batch hash should hold."""
    batch = state.batches[batch_id]
    meta = {"s": batch.status}
    if batch.version:
        meta["total"] = str(batch.total_contacts)
        meta["created_at"] = batch.created_at or ""
    return meta


# -- runner ----------------------------------------------------------------------------


class Reconciler:
    """Reads the source, compares with Redis, repairs (unless dry-run), stores reports."""

    def __init__(self, store: Store, source: Source, *, max_message_bytes: int = 64 * 1024):
        self.store = store
        self.source = source
        self.max_message_bytes = max_message_bytes

    async def expected(
        self, campaign: str | None, report: Report, progress: Callable[[int, int], None] | None
    ) -> dict[str, CampaignState]:
        """Fold the source into per-campaign states; owners already in Redis are kept."""
        states: dict[str, CampaignState] = {}
        async for records in self.source.read(progress):
            events = []
            for record in records:
                report.events_read += 1
                parsed = parse(record.value, max_bytes=self.max_message_bytes)
                if isinstance(parsed, Rejection):
                    report.invalid_skipped += 1
                elif campaign is None or parsed.campaign_id == campaign:
                    events.append(parsed)
            new = sorted({e.campaign_id for e in events} - set(states))
            for campaign_id in new:
                states[campaign_id] = CampaignState(
                    organization_id=await self.store.campaign_owner(campaign_id)
                )
            for event in events:
                apply(states[event.campaign_id], event)
        return states

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

        states = await self.expected(campaign, report, read_progress)
        if campaign is not None and campaign not in states:
            states[campaign] = CampaignState(await self.store.campaign_owner(campaign))
        for n, (campaign_id, state) in enumerate(sorted(states.items()), start=1):
            report.campaigns.append(await self.campaign(campaign_id, state, dry_run))
            if progress:
                progress("checking campaigns", n, len(states))
        report.duration_seconds = time.monotonic() - started
        return report

    async def campaign(
        self, campaign_id: str, state: CampaignState, dry_run: bool
    ) -> CampaignReport:
        """Compare and repair one campaign."""
        started = time.monotonic()
        report = CampaignReport(campaign_id, state.organization_id, dry_run)
        store = self.store
        stats_before = await store.stats_fields(campaign_id)
        batch_ids = sorted(set(await store.batch_ids(campaign_id)) | set(state.batches))
        batches_before = dict(
            zip(
                batch_ids,
                await store.hashes([keys.batch(campaign_id, b) for b in batch_ids]),
                strict=True,
            )
        )
        contacts = await self._stored(campaign_id, keys.contact_bucket)
        records = await self._stored(campaign_id, keys.record_bucket)

        # entities: missing or older in Redis, and extra
        fix_contacts = [
            (cid, c)
            for cid, c in state.contacts.items()
            if cid not in contacts or unpack_contact(contacts[cid]).version < c.version
        ]
        fix_records = [
            (eid, r)
            for eid, r in state.records.items()
            if eid not in records or unpack_record(records[eid]).version < r.version
        ]
        fix_batches = [
            (bid, b)
            for bid, b in state.batches.items()
            if b.version and int(batches_before[bid].get("v", 0) or 0) < b.version
        ]
        for items, stored in ((fix_contacts, contacts), (fix_records, records)):
            for entity_id, _ in items:
                if entity_id in stored:
                    report.entities_stale += 1
                else:
                    report.entities_missing += 1
        for bid, _ in fix_batches:
            if "s" in batches_before[bid]:
                report.entities_stale += 1
            else:
                report.entities_missing += 1
        extra = [("c", cid) for cid in contacts if cid not in state.contacts]
        extra += [("r", eid) for eid in records if eid not in state.records]
        extra += [
            ("b", bid) for bid, row in batches_before.items() if row and bid not in state.batches
        ]
        report.entities_extra = len(extra)

        # fields: stats and batch counters against what the source implies
        report.fields = field_drift(stats_counters(state), stats_before, "stats", is_stats_counter)
        per_batch = batch_counters(state)
        for bid in batch_ids:
            found = batches_before.get(bid, {})
            expected = per_batch.get(bid, {})
            scope = f"batch:{bid}"
            report.fields += field_drift(expected, found, scope, is_batch_counter)
            if bid in state.batches:
                for name, value in expected_batch_meta(state, bid).items():
                    if found.get(name) != value:
                        report.fields.append(FieldDrift(scope, name, value, found.get(name)))

        known = set(batch_ids) | {unpack_contact(p).batch_id for p in contacts.values()}
        if not dry_run:
            if state.organization_id:
                await store.ensure_owner(campaign_id, state.organization_id)
            report.tenant_conflicts = await self._repair(
                campaign_id, state, fix_batches, fix_contacts, fix_records
            )
            if extra:
                report.extra_deferred = not await self._remove(campaign_id, extra, contacts)
            report.recount_fixes = await self._recount(campaign_id, known, dry_run=False)
            await self._fill_corrected(campaign_id, report)
            if state.organization_id:
                await store.register_campaigns({campaign_id: state.organization_id})
        else:
            report.recount_fixes = await self._recount(campaign_id, known, dry_run=True)
        report.finished_at = time.time()
        report.duration_seconds = round(time.monotonic() - started, 3)
        await store.client.set(keys.reconciliation(campaign_id), json.dumps(report.to_dict()))
        return report

    async def _stored(self, campaign_id: str, bucket: Callable[[str, int], str]) -> dict[str, str]:
        rows = await self.store.hashes([bucket(campaign_id, b) for b in range(keys.STATE_BUCKETS)])
        merged: dict[str, str] = {}
        for row in rows:
            merged.update(row)
        return merged

    async def _repair(
        self,
        campaign_id: str,
        state: CampaignState,
        batches: list[Any],
        contacts: list[Any],
        records: list[Any],
    ) -> int:
        from processors.store.lua import TENANT_MISMATCH
        from processors.store.slices import encode_repair

        org = state.organization_id or ""
        calls = []
        calls.append(encode_repair(campaign_id, org, batches=batches))
        for chunk in _chunks(contacts, REPAIR_CHUNK):
            calls.append(encode_repair(campaign_id, org, contacts=chunk))
        for chunk in _chunks(records, REPAIR_CHUNK):
            calls.append(encode_repair(campaign_id, org, records=chunk))
        conflicts = 0
        for codes in await self.store.apply_calls([c for c in calls if c[1][-1]]):
            conflicts += sum(1 for code in codes if code == TENANT_MISMATCH)
        return conflicts

    async def _remove(
        self, campaign_id: str, extra: list[tuple[str, str]], contacts: dict[str, str]
    ) -> bool:
        ends = self.source.ends
        entities: list[tuple[str, str, list[str]]] = []
        for kind, entity_id in extra:
            if kind == "c":
                batch_id = unpack_contact(contacts[entity_id]).batch_id
                entity_keys = [
                    keys.contact_state(campaign_id, entity_id),
                    keys.batch(campaign_id, batch_id),
                ]
            elif kind == "r":
                entity_keys = [keys.record_state(campaign_id, entity_id)]
            else:
                entity_keys = [keys.batch(campaign_id, entity_id)]
            entities.append((kind, entity_id, entity_keys))
        for chunk in _chunks(entities, REPAIR_CHUNK):
            if await self.store.remove_entities(campaign_id, ends, chunk) < 0:
                return False
        return True

    async def _recount(self, campaign_id: str, known: set[str], *, dry_run: bool) -> int:
        """RECOUNT; a batch created meanwhile makes it refuse, then it is read and retried."""
        referenced = known | set(await self.store.batch_ids(campaign_id))
        for _ in range(5):
            drift = await self.store.recount(campaign_id, sorted(referenced), dry_run=dry_run)
            if drift is not None:
                return len(drift) // 4
            for packed in (await self._stored(campaign_id, keys.contact_bucket)).values():
                referenced.add(unpack_contact(packed).batch_id)
        raise RuntimeError(f"recount of {campaign_id} kept meeting new batches; run it again")

    async def _fill_corrected(self, campaign_id: str, report: CampaignReport) -> None:
        stats_after = await self.store.stats_fields(campaign_id)
        batch_rows: dict[str, dict[str, str]] = {}
        for drift in report.fields:
            if drift.scope == "stats":
                row = stats_after
            else:
                bid = drift.scope.split(":", 1)[1]
                if bid not in batch_rows:
                    batch_rows[bid] = (await self.store.hashes([keys.batch(campaign_id, bid)]))[0]
                row = batch_rows[bid]
            value = row.get(drift.field)
            if isinstance(drift.expected, int):
                drift.corrected = int(value or 0)
            else:
                drift.corrected = value


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
