"""`dialer-stats reconcile`: one run or a schedule, one reconciler at a time."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import suppress

from redis.exceptions import LockError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from processors import metrics
from processors.reconcile.documents import InvalidDocument
from processors.reconcile.lock import LockLost, run_holding
from processors.reconcile.report import CampaignReport, Report
from processors.reconcile.runner import Reconciler
from processors.reconcile.source import KafkaLogSource, Source
from processors.settings import Settings
from processors.store import keys
from processors.store.client import Store, connect

LOCK_KEY = f"{keys.PREFIX}:reconcile:lock"


class AlreadyRunning(Exception):
    """Another reconciler holds the lock."""


async def reconcile_once(
    settings: Settings, *, campaign: str | None, dry_run: bool, console: Console | None
) -> Report:
    """Take the lock, run once, record metrics."""
    store = Store(connect(settings))
    lock = store.client.lock(LOCK_KEY, timeout=settings.reconcile_lock_seconds, blocking=False)
    try:
        if not await lock.acquire():
            metrics.RECONCILE_RUNS.labels("skipped").inc()
            raise AlreadyRunning("another reconciliation is running (lock held)")
        reconciler = _reconciler(settings, store)
        try:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=console,
                transient=True,
                disable=console is None or not console.is_terminal,
            ) as bar:
                tasks: dict[str, TaskID] = {}

                def progress(stage: str, done: int, total: int) -> None:
                    if stage not in tasks:
                        tasks[stage] = bar.add_task(stage, total=total)
                    bar.update(tasks[stage], completed=done, total=total)

                report = await run_holding(
                    lock,
                    settings.reconcile_lock_seconds,
                    reconciler.run(campaign=campaign, dry_run=dry_run, progress=progress),
                )
        finally:
            close = getattr(reconciler.source, "close", None)
            if close is not None:
                await close()
            with suppress(LockError):
                await lock.release()
    except AlreadyRunning:
        raise
    except Exception:
        metrics.RECONCILE_RUNS.labels("failed").inc()
        raise
    finally:
        await store.close()
    metrics.RECONCILE_RUNS.labels("dry_run" if dry_run else "repaired").inc()
    metrics.RECONCILE_DRIFT.inc(sum(c.drift for c in report.campaigns))
    metrics.RECONCILE_FIXED.inc(sum(c.fixed for c in report.campaigns))
    for kind, count in drift_by_kind(report).items():
        metrics.RECONCILE_DRIFT_BY_KIND.labels(kind).inc(count)
    return report


def _reconciler(settings: Settings, store: Store) -> Reconciler:
    """The reconciler of the configured source (`log` or a `mongodb://` URL)."""
    bytes_, seconds = settings.max_message_bytes, settings.reconcile_catch_up_seconds
    if settings.reconcile_source == "log":
        source: Source = KafkaLogSource(settings)
        return Reconciler(store, source, max_message_bytes=bytes_, catch_up_seconds=seconds)
    from processors.reconcile.database import DatabaseReconciler
    from processors.reconcile.mongo import MongoSource

    mongo = MongoSource(settings, settings.reconcile_source)
    return DatabaseReconciler(store, mongo, max_message_bytes=bytes_, catch_up_seconds=seconds)


def invalid_documents(report: CampaignReport) -> list[InvalidDocument]:
    """The documents of a database run that failed validation (none for the log)."""
    return list(getattr(report, "invalid_documents", ()))


def drift_by_kind(report: Report) -> dict[str, int]:
    """Real drift by kind: entities missing, stale or extra in the stats, counter fields,
    and database documents that failed validation."""
    kinds = {
        "missing": sum(c.entities_missing for c in report.campaigns),
        "stale": sum(c.entities_stale for c in report.campaigns),
        "extra": sum(c.entities_extra for c in report.campaigns),
        "field": sum(len(c.fields) for c in report.campaigns),
        "invalid_document": sum(len(getattr(c, "invalid_documents", ())) for c in report.campaigns),
    }
    return {kind: count for kind, count in kinds.items() if count}


def render(report: Report, console: Console) -> None:
    """The human report."""
    totals = report.totals()
    summary = Table(
        title="Reconciliation" + (" (dry run: nothing written)" if report.dry_run else "")
    )
    for column in (
        "campaign",
        "organization",
        "missing",
        "stale",
        "extra",
        "in flight",
        "fields",
        "recount",
        "s",
    ):
        summary.add_column(
            column, justify="left" if column in ("campaign", "organization") else "right"
        )
    for c in report.campaigns:
        extra = str(c.entities_extra)
        if c.extra_unconfirmed:
            extra += f" (+{c.extra_unconfirmed} deferred)"
        summary.add_row(
            c.campaign_id, c.organization_id or "-", str(c.entities_missing),
            str(c.entities_stale), extra, str(c.entities_in_flight), str(len(c.fields)),
            str(c.recount_fixes), f"{c.duration_seconds:.2f}",
        )  # fmt: skip
    console.print(summary)
    drifted = [(c.campaign_id, d) for c in report.campaigns for d in c.fields]
    if drifted:
        table = Table(title="Fields that differed")
        for column in ("campaign", "scope", "field", "expected", "found", "corrected"):
            table.add_column(column)
        for campaign_id, d in drifted[:200]:
            corrected = "-" if report.dry_run else str(d.corrected)
            table.add_row(campaign_id, d.scope, d.field, str(d.expected), str(d.found), corrected)
        if len(drifted) > 200:
            table.caption = f"{len(drifted) - 200} more; use --json for all"
        console.print(table)
    invalid = [(c.campaign_id, doc) for c in report.campaigns for doc in invalid_documents(c)]
    if invalid:
        table = Table(title="Database documents that failed validation (not applied)")
        for column in ("campaign", "collection", "id", "reason", "message"):
            table.add_column(column)
        for campaign_id, doc in invalid[:200]:
            table.add_row(campaign_id, doc.collection, doc.id, doc.reason, doc.message)
        console.print(table)
    console.print(
        f"{totals['campaigns']} campaigns, {totals['campaigns_with_drift']} with drift, "
        f"{report.events_read} events read ({report.invalid_skipped} invalid skipped) "
        f"in {report.duration_seconds:.2f} s"
    )


def run(
    settings: Settings,
    *,
    campaign: str | None,
    dry_run: bool,
    as_json: bool,
    every: float | None,
) -> int:
    """The command: exit code 0, or 1 when another run holds the lock (single run)."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # piped: do not squeeze the tables into 80 columns
    err = Console(stderr=True)
    if every and settings.reconcile_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.reconcile_metrics_port)
    while True:
        started = time.monotonic()
        try:
            report = asyncio.run(
                reconcile_once(settings, campaign=campaign, dry_run=dry_run, console=err)
            )
        except AlreadyRunning as exc:
            err.print(f"skipped: {exc}")
            if not every:
                return 1
        except LockLost as exc:
            err.print(f"stopped: {exc}")
            if not every:
                return 1
        else:
            if as_json:
                print(json.dumps(report.to_dict()), flush=True)
            else:
                render(report, console)
        if not every:
            return 0
        time.sleep(max(every - (time.monotonic() - started), 0))
