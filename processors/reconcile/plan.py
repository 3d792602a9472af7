"""The pure half of reconciliation: which entities to repair or remove, what the repairs
imply for the counters, and which drift is real (see `runner` for the run itself)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from processors.domain.transitions import (
    BatchState,
    CampaignState,
    ContactState,
    RecordState,
    series_of,
    unpack_contact,
    unpack_record,
)
from processors.reconcile.report import FieldDrift
from processors.store.keys import digest

#: `topic:partition` -> an offset
Offsets = dict[str, int]
#: (scope, field) -> a counter change; scope "stats" or "batch:<id>"
Delta = Counter[tuple[str, str]]
#: RECOUNT's scope of a batch hash rewritten from millisecond to microsecond scores
MIGRATED = "migrated"


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


def version_of(row: dict[str, str]) -> int:
    return int(row.get("v", 0) or 0)


def behind(stored: str | None, version: int, unpack: Callable[[str], Any]) -> bool:
    return stored is None or unpack(stored).version < version


def record_behind(stored: str | None, version: int) -> bool:
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
            if b.version and version_of(rows.get(bid, {})) < b.version
        ],
        contacts=[
            (cid, c)
            for cid, c in state.contacts.items()
            if behind(contacts.get(digest(cid)), c.version, unpack_contact)
        ],
        records=[
            (eid, r)
            for eid, r in state.records.items()
            if record_behind(records.get(digest(eid)), r.version)
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


def is_counter(scope: str, name: str) -> bool:
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
        if is_counter(scope, name) and _is_int(expected):
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
