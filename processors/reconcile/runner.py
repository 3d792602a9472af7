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
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from processors.domain.contract import APPLIED, TENANT_MISMATCH, Rejection
from processors.domain.events import parse
from processors.domain.transitions import (
    BatchState,
    CampaignState,
    ContactState,
    RecordState,
    apply,
    series_of,
    unpack_contact,
    unpack_record,
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
#: RECOUNT's scope of a batch hash rewritten from millisecond to microsecond scores
MIGRATED = "migrated"
#: How long a run waits for the worker to apply what the source read, and how often it looks.
CATCH_UP_SECONDS = 10.0
CATCH_UP_POLL = 0.2

#: `topic:partition` -> an offset
Offsets = dict[str, int]
#: (scope, field) -> a counter change; scope "stats" or "batch:<id>"
Delta = Counter[tuple[str, str]]


@dataclass
class FieldDrift:
    """One counter or index entry that differed from what the entity state implies."""

    scope: str  # "stats", "batch:<id>" or "index:<batch id>"
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
    #: newer in the source than in Redis while the worker had not applied the source's
    #: records yet: lag, not drift (repaired anyway)
    entities_in_flight: int = 0
    #: in Redis, not in the source, but possibly newer than the read: left for a later run
    extra_unconfirmed: int = 0
    extra_deferred: bool = False
    #: whether the worker had applied everything the source read for this campaign
    #: (asked only when Redis was behind the source)
    worker_caught_up: bool = True
    tenant_conflicts: int = 0
    recount_fixes: int = 0
    #: batch hashes of the millisecond score layout rewritten (or, dry, to rewrite) to
    #: microseconds (an upgrade step, not drift)
    batches_migrated: int = 0
    #: call records stored before time series (no occurred_at) rewritten with their time
    #: (or, dry, to rewrite): an upgrade step, not drift
    records_upgraded: int = 0
    fields: list[FieldDrift] = field(default_factory=list)
    fixed: int = 0
    finished_at: float = 0.0
    duration_seconds: float = 0.0

    @property
    def drift(self) -> int:
        """Number of real differences found."""
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
            "entities_in_flight": sum(c.entities_in_flight for c in self.campaigns),
            "extra_unconfirmed": sum(c.extra_unconfirmed for c in self.campaigns),
            "batches_migrated": sum(c.batches_migrated for c in self.campaigns),
            "records_upgraded": sum(c.records_upgraded for c in self.campaigns),
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


@dataclass
class Snapshot:
    """What Redis held for one campaign when it was read. Entity states are stored under
    the digests of their ids (`keys.digest`); a contact's packed state names its batch id."""

    batches: dict[str, dict[str, str]]  # batch id -> its hash
    contacts: dict[str, str]  # contact digest -> packed state
    records: dict[str, str]  # execution digest -> packed state

    def named_batches(self) -> set[str]:
        """Batches some stored contact names."""
        return {unpack_contact(packed).batch_id for packed in self.contacts.values()}


@dataclass
class Plan:
    """Entities to re-apply (older or missing in Redis) and to remove (not in the source)."""

    batches: list[tuple[str, BatchState]]
    contacts: list[tuple[str, ContactState]]
    records: list[tuple[str, RecordState]]
    extra: list[tuple[str, str]]  # (kind b|c|r, batch id or entity digest)

    @classmethod
    def only(cls, kind: str, items: list[Any]) -> Plan:
        """A plan of one kind of entity: `batches`, `contacts` or `records`."""
        plan = cls([], [], [], [])
        setattr(plan, kind, items)
        return plan


@dataclass
class Changes:
    """Entity states a run changed (or, dry, would change): (before, after), None = absent."""

    contacts: list[tuple[ContactState | None, ContactState | None]] = field(default_factory=list)
    records: list[tuple[RecordState | None, RecordState | None]] = field(default_factory=list)
    batches: dict[str, str | None] = field(default_factory=dict)  # id -> status after


def applied_through(last: Offsets, fence: Offsets, committed: Offsets) -> bool:
    """Whether the worker applied every record read: per partition, the campaign's fence
    reached the last offset read, or the consumer group committed past it."""
    return all(fence.get(tp, -1) >= off or committed.get(tp, 0) > off for tp, off in last.items())


def _version(row: dict[str, str]) -> int:
    return int(row.get("v", 0) or 0)


def _behind(stored: str | None, version: int, unpack: Callable[[str], Any]) -> bool:
    return stored is None or unpack(stored).version < version


def _record_behind(stored: str | None, version: int) -> bool:
    """Older, or stored before time series (no occurred_at: the same version rewrites it)."""
    if stored is None:
        return True
    record = unpack_record(stored)
    return record.version < version or (record.version == version and record.minute is None)


def plan(state: CampaignState, snap: Snapshot) -> Plan:
    """What is older or missing in Redis, and what Redis has that the source lacks."""
    contacts, records, rows = snap.contacts, snap.records, snap.batches
    contact_digests = {digest(cid) for cid in state.contacts}
    record_digests = {digest(eid) for eid in state.records}
    return Plan(
        batches=[
            (bid, b)
            for bid, b in state.batches.items()
            if b.version and _version(rows.get(bid, {})) < b.version
        ],
        contacts=[
            (cid, c)
            for cid, c in state.contacts.items()
            if _behind(contacts.get(digest(cid)), c.version, unpack_contact)
        ],
        records=[
            (eid, r)
            for eid, r in state.records.items()
            if _record_behind(records.get(digest(eid)), r.version)
        ],
        extra=[("c", d) for d in contacts if d not in contact_digests]
        + [("r", d) for d in records if d not in record_digests]
        + [("b", bid) for bid, row in rows.items() if row and bid not in state.batches],
    )


def changes_of(snap: Snapshot, done: Plan, removed: Sequence[tuple[str, str]]) -> Changes:
    """The state changes of re-applying `done` and removing `removed`."""
    changes = Changes()
    for cid, c in done.contacts:
        old = snap.contacts.get(digest(cid))
        changes.contacts.append((unpack_contact(old) if old else None, c))
    for eid, r in done.records:
        old = snap.records.get(digest(eid))
        changes.records.append((unpack_record(old) if old else None, r))
    changes.batches = {bid: b.status for bid, b in done.batches}
    for kind, entity_id in removed:
        if kind == "c":
            changes.contacts.append((unpack_contact(snap.contacts[entity_id]), None))
        elif kind == "r":
            changes.records.append((unpack_record(snap.records[entity_id]), None))
        else:
            changes.batches[entity_id] = None
    return changes


def _contact_counters(delta: Delta, contact: ContactState, by: int) -> None:
    batch = f"batch:{contact.batch_id}"
    for scope, total in (("stats", "contacts"), (batch, "known")):
        delta[scope, total] += by
        delta[scope, f"contacts:{contact.status}"] += by
        if contact.status == "retrying":
            delta[scope, f"retry:{contact.retry_count}"] += by


def _batch_after(
    row: dict[str, str], repaired: dict[str, str | None], bid: str, joined: int
) -> str | None:
    """A batch's status once the changes are applied (None: no batch hash), as APPLY_SLICE
    and REMOVE_ENTITIES leave it: a contact joining a batch without a hash creates it as
    pending; a batch known only from contacts goes with the last one that leaves it."""
    if bid in repaired:
        return repaired[bid]
    status = row.get("s")
    if status is None:
        return "pending" if joined > 0 else None
    unnamed = int(row.get("known", 0) or 0) + joined <= 0
    if joined < 0 and unnamed and int(row.get("v", 0) or 0) == 0:
        return None
    return status


def counter_delta(changes: Changes, rows: dict[str, dict[str, str]]) -> Delta:
    """How the changes move the counters (the scripts write counters with the states).

    `rows` are the batch hashes before the changes, as RECOUNT would see them. Exact when
    the worker had caught up (the states read are the ones a repair replaces); for a
    campaign in flight the worker may move an entity between the read and the repair.
    """
    delta: Delta = Counter()
    joined: Counter[str] = Counter()
    entity_delta(changes, delta, joined)
    batch_delta(changes.batches, joined, rows, delta)
    return delta


def entity_delta(changes: Changes, delta: Delta, joined: Counter[str]) -> None:
    """Add how the contact and record changes move the counters to `delta`, and how many
    contacts each batch gains or loses to `joined`."""
    for old_c, new_c in changes.contacts:
        for contact, by in ((old_c, -1), (new_c, 1)):
            if contact is not None:
                _contact_counters(delta, contact, by)
                joined[contact.batch_id] += by
    now_ms = int(time.time() * 1000)
    for old_r, new_r in changes.records:
        for record, by in ((old_r, -1), (new_r, 1)):
            if record is not None:
                delta["stats", f"calls:{record.status}"] += by
                if record.follow_up:
                    delta["stats", "calls:follow_up"] += by
                for (scope, name), value in series_of(record, now_ms).items():
                    delta[scope, name] += by * value


def batch_delta(
    batches: dict[str, str | None],
    joined: Counter[str],
    rows: dict[str, dict[str, str]],
    delta: Delta,
) -> None:
    """Add the batch status moves to `delta`: batches re-applied or removed (`batches`: id
    -> status after, None when gone) and batches whose contacts came or went (`joined`)."""
    for bid in set(joined) | set(batches):
        row = rows.get(bid, {})
        before, after = row.get("s"), _batch_after(row, batches, bid, joined[bid])
        if before is not None:
            delta["stats", f"batches:{before}"] -= 1
        if after is not None:
            delta["stats", f"batches:{after}"] += 1


class Effects:
    """What a repair implies, added up as its parts are confirmed: the batches it touches,
    and how the states it finds lost (absent, or removed as extra) move the counters."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.touched: set[str] = set()
        self.lost: Delta = Counter()
        self.joined: Counter[str] = Counter()
        self.lost_batches: dict[str, str | None] = {}

    def add(self, done: Plan | None = None, removed: Sequence[tuple[str, str]] = ()) -> None:
        """Entities re-applied (`done`) or removed."""
        done = done if done is not None else Plan([], [], [], [])
        self.touched |= touched_batches(changes_of(self.snap, done, removed))
        lost = changes_of(self.snap, lost_plan(self.snap, done), removed)
        entity_delta(lost, self.lost, self.joined)
        self.lost_batches.update(lost.batches)

    def totals(self) -> tuple[set[str], Delta]:
        """The batches touched, and the counter moves of the lost states."""
        lost = Counter(self.lost)
        batch_delta(self.lost_batches, self.joined, recount_view(self.snap), lost)
        return self.touched, lost


def recount_view(snap: Snapshot) -> dict[str, dict[str, str]]:
    """Batch hashes as a dry RECOUNT sees them (a real one makes them so): a batch without a
    hash but named by contacts counts as pending; one known only from contacts that none
    names any more does not count."""
    rows = dict(snap.batches)
    named = snap.named_batches()
    for bid in named:
        if "s" not in rows.get(bid, {}):
            rows[bid] = {**rows.get(bid, {}), "s": "pending", "v": "0"}
    for bid, row in snap.batches.items():
        if bid not in named and "s" in row and int(row.get("v", 0) or 0) == 0:
            rows[bid] = {k: v for k, v in row.items() if k != "s"}
    return rows


def touched_batches(changes: Changes) -> set[str]:
    """Batches whose hash or index entries the changes rewrite."""
    touched = set(changes.batches)
    for old, new in changes.contacts:
        touched.update(c.batch_id for c in (old, new) if c is not None)
    return touched


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _scope(recount_scope: str) -> str:
    if recount_scope == "stats" or recount_scope.startswith(("index:", "series:")):
        return recount_scope
    return f"batch:{recount_scope}"


def _is_counter(scope: str, name: str) -> bool:
    return (
        scope == "stats"
        or (scope.startswith("batch:") and name != "s")
        or scope.startswith("series:")
    )


@dataclass
class Census:
    """What one RECOUNT saw of a campaign, at one atomic cut (see `census_of`)."""

    #: (scope, field) -> (value found, value the entity state implies), every counter; one
    #: absent from both is (0, 0). A counter edited to text is found as that text.
    counters: dict[tuple[str, str], tuple[int | str, int]] = field(default_factory=dict)
    #: index and batch metadata differences: (scope, field, found, expected)
    other: list[tuple[str, str, str, str]] = field(default_factory=list)
    #: batch hashes of the millisecond score layout (rewritten unless dry)
    migrated: int = 0

    @property
    def fixes(self) -> int:
        """What the RECOUNT corrected (or, dry, would correct)."""
        counters = sum(1 for found, implied in self.counters.values() if found != implied)
        return counters + len(self.other)


def census_of(quads: list[str]) -> Census:
    """A census RECOUNT's quadruples, sorted into counters and the rest."""
    census = Census()
    for n in range(0, len(quads), 4):
        if quads[n] == MIGRATED:
            census.migrated += 1
            continue
        scope, name, found, expected = _scope(quads[n]), *quads[n + 1 : n + 4]
        if _is_counter(scope, name) and _is_int(expected):
            census.counters[scope, name] = (int(found) if _is_int(found) else found, int(expected))
        else:
            census.other.append((scope, name, found, expected))
    return census


def lost_plan(snap: Snapshot, done: Plan) -> Plan:
    """The re-applied entities Redis had no state of at all (missing, not stale)."""
    return Plan(
        batches=[(bid, b) for bid, b in done.batches if "s" not in snap.batches.get(bid, {})],
        contacts=[(cid, c) for cid, c in done.contacts if digest(cid) not in snap.contacts],
        records=[(eid, r) for eid, r in done.records if digest(eid) not in snap.records],
        extra=[],
    )


def field_drift(
    before: Census, after: Census | None, lost: Delta, *, touched: Iterable[str] = ()
) -> list[FieldDrift]:
    """Real field drift: counters judged against the entity state at one atomic cut.

    `before` is a census taken before the repairs, `after` the correcting one taken after
    them (None in a dry run, which repairs nothing). A counter found in Redis should be
    what the entity state found there implies: the scripts write both at once, so a
    lost write or an older copy of Redis loses both alike. One exception: entity states
    deleted on their own leave their counts behind, so counters may instead match the
    state with the entities Redis lacked restored and those it has in excess removed
    (`lost`: the counter change of those repairs, `counter_delta` of `lost_plan`). Which
    of the two fits is judged per campaign: the one leaving fewer counters drifted, the
    first on a tie. A stale entity (present in an older version) never explains a
    difference, so an edit cannot hide behind its repair.

    `found` is the counter before the run, `expected` what it should have been then, and
    `corrected` its value after the run (what the repaired state implies: the repairs'
    own changes included). Index and metadata entries come from `after` (the repairs set
    theirs right first); in a dry run from `before`, less those of batches the repairs
    would rewrite (`touched`).
    """

    def drifted(explained: Delta) -> dict[tuple[str, str], tuple[int | str, int]]:
        out = {}
        for key in set(before.counters) | {k for k, v in explained.items() if v}:
            found, implied = before.counters.get(key, (0, 0))
            expected = implied + explained.get(key, 0)
            if found != expected:
                out[key] = (found, expected)
        return out

    followed = drifted(Counter())
    kept = drifted(lost) if any(lost.values()) else followed
    chosen = kept if len(kept) < len(followed) else followed
    drift = []
    for scope, name in sorted(chosen, key=lambda k: (k[0] != "stats", k)):
        found, expected = chosen[scope, name]
        corrected = None if after is None else after.counters.get((scope, name), (0, 0))[1]
        drift.append(FieldDrift(scope, name, expected, found, corrected))
    rewritten = {f"{kind}:{bid}" for bid in touched for kind in ("batch", "index")}
    for scope, name, found_s, expected_s in (before if after is None else after).other:
        if after is None and scope in rewritten:
            continue
        drift.append(
            FieldDrift(scope, name, expected_s, found_s, None if after is None else expected_s)
        )
    return drift


def meta_drift(state: CampaignState, rows: dict[str, dict[str, str]]) -> list[FieldDrift]:
    """Batch metadata differing at the same version (edited by hand: the version check
    cannot repair it; reported only)."""
    drift = []
    for bid, batch in state.batches.items():
        row = rows.get(bid, {})
        if not batch.version or int(row.get("v", 0) or 0) != batch.version:
            continue
        want = {
            "s": batch.status,
            "total": str(batch.total_contacts),
            "created_at": batch.created_at or "",
        }
        for name, value in want.items():
            if row.get(name) != value:
                drift.append(FieldDrift(f"batch:{bid}", name, value, row.get(name)))
    return drift


# -- runner ----------------------------------------------------------------------------


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
            and (d.corrected == d.expected or _is_counter(d.scope, d.field))
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
        rows = await self.store.hashes([keys.batch(campaign_id, bid) for bid, _ in todo.batches])
        snap.batches.update((bid, row) for (bid, _), row in zip(todo.batches, rows, strict=True))
        batches = [(bid, b) for bid, b in todo.batches if _version(snap.batches[bid]) < b.version]
        if not moved:  # no state changed meanwhile: the same ones are behind
            return Plan(batches, todo.contacts, todo.records, todo.extra)
        return Plan(
            batches=batches,
            contacts=[
                (cid, c)
                for cid, c in todo.contacts
                if _behind(snap.contacts.get(digest(cid)), c.version, unpack_contact)
            ],
            records=[
                (eid, r)
                for eid, r in todo.records
                if _record_behind(snap.records.get(digest(eid)), r.version)
            ],
            extra=todo.extra,
        )

    async def _snapshot(self, campaign_id: str, state: CampaignState) -> Snapshot:
        batch_ids = sorted(set(await self.store.batch_ids(campaign_id)) | set(state.batches))
        rows = await self.store.hashes([keys.batch(campaign_id, b) for b in batch_ids])
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
                rows[bid] = (await self.store.hashes([keys.batch(campaign_id, bid)]))[0]
            drift.corrected = rows[bid].get(drift.field)


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
