"""A realistic dialer: campaigns, batches, contacts through their lifecycle, call records,
retries, follow-ups, skips -- with duplicates, out-of-order versions and messy statuses.

`Simulation.events()` is pure (seeded, no I/O); `publish` sends it to Kafka at a rate.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

Event = dict[str, Any]

_OUTCOMES = ("completed", "failed", "busy", "no_answer")
_OUTCOME_WEIGHTS = (50, 10, 15, 25)
_RETRYABLE = ("failed", "busy", "no_answer")


@dataclass
class _Contact:
    contact_id: str
    batch: _Batch
    status: str = "pending"
    version: int = 0
    retry_count: int = 0
    follow_up_count: int = 0
    in_follow_up: bool = False
    slot: int = -1  # position in Simulation._active, -1 when retired


@dataclass
class _Batch:
    batch_id: str
    campaign: _Campaign
    created_at: datetime
    status: str = "pending"
    version: int = 0
    contacts: list[_Contact] = field(default_factory=list)
    active: int = 0


@dataclass
class _Campaign:
    campaign_id: str
    organization_id: str
    max_retries: int
    batches: list[_Batch] = field(default_factory=list)


class Simulation:
    """An endless, reproducible stream of dialer events (JSON-ready dicts)."""

    def __init__(
        self,
        *,
        campaigns: int = 3,
        organizations: int = 2,
        seed: int = 0,
        batch_size: tuple[int, int] = (20, 60),
        duplicate_rate: float = 0.02,
        reorder_rate: float = 0.03,
        messy_rate: float = 0.1,
        prefix: str = "",
        start: datetime | None = None,
        new_batch_rate: float = 0.01,
        wall_clock: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        #: event times from the wall clock (live traffic) instead of the simulated clock
        self.wall_clock = wall_clock
        self.new_batch_rate = new_batch_rate
        self.batch_size = batch_size
        self.duplicate_rate = duplicate_rate
        self.reorder_rate = reorder_rate
        self.messy_rate = messy_rate
        self.clock = start or datetime(2026, 5, 8, 9, 0, tzinfo=UTC)
        self._ids = itertools.count(1)
        tag = f"{prefix}{seed}"
        self.campaigns = [
            _Campaign(f"cmp_{tag}_{i}", f"org_{tag}_{i % organizations}", self.rng.randint(1, 3))
            for i in range(campaigns)
        ]
        self._active: list[_Contact] = []
        self._batch_seq = itertools.count(1)
        self._exec_seq = itertools.count(1)

    # -- helpers ---------------------------------------------------------------------

    def _now(self) -> str:
        # drawn on either clock, so that a seed gives the same events on both
        step = timedelta(milliseconds=self.rng.randint(1, 500))
        if self.wall_clock:
            self.clock = max(datetime.now(UTC), self.clock + timedelta(microseconds=1))
        else:
            self.clock += step
        return self.clock.isoformat().replace("+00:00", "Z")

    def _messy(self, status: str) -> str:
        if self.rng.random() >= self.messy_rate:
            return status
        return self.rng.choice([status.upper(), status.replace("_", "-"), status.title()])

    def _base(self, event_type: str, campaign: _Campaign, version: int) -> Event:
        return {
            "event_id": f"evt_{next(self._ids)}",
            "event_type": event_type,
            "organization_id": campaign.organization_id,
            "campaign_id": campaign.campaign_id,
            "occurred_at": self._now(),
            "version": version,
        }

    def _batch_event(self, batch: _Batch, status: str) -> Event:
        batch.status = status
        batch.version += 1
        event = self._base("batch.upserted", batch.campaign, batch.version)
        event.update(
            batch_id=batch.batch_id,
            status=self._messy(status),
            total_contacts=len(batch.contacts),
            created_at=batch.created_at.isoformat().replace("+00:00", "Z"),
        )
        return event

    def _contact_event(self, contact: _Contact, status: str) -> Event:
        contact.status = status
        contact.version += 1
        event = self._base("contact.status_changed", contact.batch.campaign, contact.version)
        event.update(
            batch_id=contact.batch.batch_id,
            contact_id=contact.contact_id,
            status=self._messy(status),
            retry_count=contact.retry_count,
            follow_up_count=contact.follow_up_count,
        )
        return event

    def _call_record(self, contact: _Contact, outcome: str) -> Event:
        event = self._base("call_record.completed", contact.batch.campaign, 1)
        event.update(
            batch_id=contact.batch.batch_id,
            contact_id=contact.contact_id,
            execution_id=f"exec_{contact.batch.campaign.campaign_id}_{next(self._exec_seq)}",
            call_status=self._messy(outcome).replace("_", "-"),
            is_follow_up=contact.in_follow_up,
            retry_index=contact.retry_count,
            duration_seconds=round(self.rng.uniform(0, 300), 1) if outcome == "completed" else 0,
        )
        return event

    # -- lifecycle -------------------------------------------------------------------

    def _new_batch(self) -> Iterator[Event]:
        campaign = self.rng.choice(self.campaigns)
        batch = _Batch(f"btc_{campaign.campaign_id}_{next(self._batch_seq)}", campaign, self.clock)
        campaign.batches.append(batch)
        for n in range(self.rng.randint(*self.batch_size)):
            batch.contacts.append(_Contact(f"con_{batch.batch_id}_{n}", batch))
        yield self._batch_event(batch, "pending")
        for contact in batch.contacts:
            yield self._contact_event(contact, "pending")
        yield self._batch_event(batch, "in_progress")
        for contact in batch.contacts:
            self._activate(contact)

    def _advance(self, contact: _Contact) -> Iterator[Event]:
        status = contact.status
        if status in ("pending", "retrying", "followup_scheduled"):
            yield self._contact_event(contact, "dispatched")
        elif status == "dispatched":
            yield self._contact_event(contact, "in_progress")
        elif status == "in_progress":
            outcome = self.rng.choices(_OUTCOMES, _OUTCOME_WEIGHTS)[0]
            yield self._call_record(contact, outcome)
            yield self._contact_event(contact, outcome)
        elif status == "completed":
            if not contact.in_follow_up and self.rng.random() < 0.15:
                contact.follow_up_count += 1
                contact.in_follow_up = True
                yield self._contact_event(contact, "followup_scheduled")
            else:
                self._retire(contact)
        elif status in _RETRYABLE:
            if contact.retry_count < contact.batch.campaign.max_retries:
                contact.retry_count += 1
                yield self._contact_event(contact, "retrying")
            else:
                yield self._contact_event(contact, "max_retries_reached")
                self._retire(contact)
        else:
            self._retire(contact)

    def _activate(self, contact: _Contact) -> None:
        contact.slot = len(self._active)
        self._active.append(contact)
        contact.batch.active += 1

    def _deactivate(self, contact: _Contact) -> None:
        last = self._active.pop()
        if last is not contact:
            self._active[contact.slot] = last
            last.slot = contact.slot
        contact.slot = -1
        contact.batch.active -= 1

    def _retire(self, contact: _Contact) -> None:
        self._deactivate(contact)
        batch = contact.batch
        if batch.status == "in_progress" and batch.active == 0:
            self._pending_batch_events.append(self._batch_event(batch, "completed"))

    def _cancel(self, batch: _Batch) -> Iterator[Event]:
        yield self._batch_event(batch, "cancelled")
        for contact in batch.contacts:
            if contact.slot >= 0 and contact.status in (
                "pending",
                "dispatched",
                "retrying",
                "followup_scheduled",
            ):
                yield self._contact_event(contact, "skipped")
                self._deactivate(contact)

    def _steps(self) -> Iterator[Event]:
        self._pending_batch_events: list[Event] = []
        while True:
            roll = self.rng.random()
            if not self._active or roll < self.new_batch_rate:
                yield from self._new_batch()
            elif roll < self.new_batch_rate + 0.0004:
                running = [
                    b for c in self.campaigns for b in c.batches if b.status == "in_progress"
                ]
                if running:
                    yield from self._cancel(self.rng.choice(running))
            else:
                yield from self._advance(self.rng.choice(self._active))
            yield from self._pending_batch_events
            self._pending_batch_events.clear()

    def events(self) -> Iterator[Event]:
        """The stream as delivered: with duplicates and some versions delayed."""
        delayed: list[tuple[int, Event]] = []
        for n, event in enumerate(self._steps()):
            if self.rng.random() < self.reorder_rate:
                delayed.append((n + self.rng.randint(1, 20), event))
            else:
                yield event
                if self.rng.random() < self.duplicate_rate:
                    yield dict(event)
            while delayed and delayed[0][0] <= n:
                yield delayed.pop(0)[1]
