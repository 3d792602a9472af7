"""Reconciliation from the dialer's database, one campaign at a time.

Memory is bounded by the largest campaign: each one is read (`MongoSource.read_campaign`),
folded by the pure model, compared and repaired by `Reconciler.campaign` -- the same
version-checked scripts as a log run -- before the next is read. Campaigns are the
database's and Redis's: one Redis has and the database lacks has its entities removed
(fenced like any removal).

What the report adds, per campaign: where the figures come from (`source`), the documents
read, and every document that failed validation (`invalid_documents`: collection, id,
reason). `entities_missing` / `entities_stale` are entities the database has in a newer
version than anything the worker applied (the event never reached the stats: a dual-write
gap or a lost topic); `entities_extra` are entities the stats have and the database lacks.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any, cast

from processors.domain.transitions import CampaignState, apply
from processors.reconcile.documents import InvalidDocument
from processors.reconcile.mongo import MongoSource
from processors.reconcile.report import CampaignReport, Report
from processors.reconcile.runner import Reconciler, WorkerProgress
from processors.store import keys


@dataclass
class DatabaseCampaignReport(CampaignReport):
    """A campaign report with what the database read found."""

    source: str = "mongodb"
    documents_read: int = 0
    invalid_documents: list[InvalidDocument] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["drift"] = self.drift
        return data


@dataclass
class DatabaseReport(Report):
    """A run from the database."""

    source: str = "mongodb"

    def totals(self) -> dict[str, int]:
        totals = super().totals()
        totals["invalid_documents"] = sum(
            len(c.invalid_documents)
            for c in self.campaigns
            if isinstance(c, DatabaseCampaignReport)
        )
        return totals

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, **super().to_dict()}


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while one campaign is read, folded and repaired.

    A campaign's objects (documents, events, states, digests) hold no cycles: reference
    counting frees them. With the collector on, the hundreds of thousands of them a large
    campaign keeps alive are walked again by every full collection, several seconds in
    all. What cycles the run itself leaves are collected once the collector is back on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class DatabaseReconciler(Reconciler):
    """Reads the database campaign by campaign; repairs like the log reconciler."""

    source: MongoSource

    async def run(
        self,
        *,
        campaign: str | None = None,
        dry_run: bool = False,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> Report:
        started = time.monotonic()
        report = DatabaseReport(dry_run=dry_run)
        if campaign is not None:
            campaign_ids = [campaign]
        else:
            known = cast(set[str], await self.store.client.smembers(keys.CAMPAIGNS))
            campaign_ids = sorted(set(await self.source.campaigns()) | known)
        for n, campaign_id in enumerate(campaign_ids, start=1):
            with collector_paused():
                campaign_report = await self.database_campaign(campaign_id, dry_run, report)
            report.campaigns.append(campaign_report)
            if progress:
                progress("reconciling campaigns from the database", n, len(campaign_ids))
        report.duration_seconds = time.monotonic() - started
        return report

    async def database_campaign(
        self, campaign_id: str, dry_run: bool, run: Report
    ) -> DatabaseCampaignReport:
        """Read, fold, compare and repair one campaign; store the extended report."""
        # Ends before the read: anything the worker applied from before them was in the
        # database when the read began, so an entity missing from the read is not new.
        self.source.ends = await self.source.log_ends()
        docs = await self.source.read_campaign(campaign_id, max_bytes=self.max_message_bytes)
        run.events_read += docs.read
        run.invalid_skipped += len(docs.invalid)
        state = CampaignState(organization_id=await self.store.campaign_owner(campaign_id))
        for event in docs.events:
            apply(state, event)
        # The worker has caught up once it applied everything published so far: the
        # events of whatever the read saw were published right after their writes.
        ends = await self.source.log_ends()
        last = {campaign_id: {tp: end - 1 for tp, end in ends.items() if end > 0}}
        worker = WorkerProgress(self.store, self.source, last, self.catch_up_seconds)
        base = await self.campaign(campaign_id, state, dry_run, worker)
        report = DatabaseCampaignReport(
            **{f.name: getattr(base, f.name) for f in fields(CampaignReport)},
            documents_read=docs.read,
            invalid_documents=docs.invalid,
        )
        await self.store.client.set(keys.reconciliation(campaign_id), json.dumps(report.to_dict()))
        return report
