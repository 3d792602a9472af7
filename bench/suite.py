"""The benchmark suite: runs every figure on fresh embedded stacks and reports them."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from bench import database, dataset, freshness, ingest, latency, memory, reads, streams
from bench.harness import Child, Figure, api_process
from processors.reconcile.runner import Reconciler
from processors.reconcile.source import KafkaLogSource
from processors.settings import Settings
from processors.store.client import Store, connect
from processors.tools.embedded import EmbeddedInfra


@dataclass(frozen=True)
class Sizes:
    ingest: int
    big: int
    requests: int
    recounts: int
    fresh_seconds: float
    stream_clients: int
    database: int
    read_requests: int  # per run of the read throughput figures (ab -n)
    read_rounds: int  # alternating runs of the API and the reference app per figure


FULL = Sizes(
    ingest=1_000_000, big=1_000_000, requests=500, recounts=5, fresh_seconds=20.0,
    stream_clients=1000, database=100_000, read_requests=5000, read_rounds=5,
)  # fmt: skip
QUICK = Sizes(
    ingest=30_000, big=50_000, requests=100, recounts=2, fresh_seconds=5.0, stream_clients=100,
    database=2_000, read_requests=1000, read_rounds=3,
)  # fmt: skip


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def token_for(redis_url: str, org: str) -> str:
    async def create() -> str:
        store = Store(connect(Settings(redis_url=redis_url)))
        try:
            return await store.create_token(org)
        finally:
            await store.close()

    return asyncio.run(create())


def run(*, quick: bool, console: Console, reads_only: bool = False) -> dict[str, Any]:
    """Every figure (only the read path's with `reads_only`); returns the JSON report."""
    size = QUICK if quick else FULL
    figures: list[Figure] = []
    workdir = Path(tempfile.mkdtemp(prefix="dialer-bench-"))
    started = time.monotonic()
    if reads_only:
        figures += read_path(size, workdir, console)
        return report(quick, started, figures)

    # Stack A: ingest, then freshness with a worker that has caught up.
    with EmbeddedInfra(Settings(topic_partitions=6)) as infra:
        console.print(f"[bold]ingest[/bold]: {size.ingest:,} events")
        ingest_figures, ingest_rate = ingest.run(infra, workdir, size.ingest, console)
        figures += ingest_figures
        console.print("[bold]freshness[/bold]")
        worker = Child(infra, workdir / "fresh-worker.log", "worker", "--loglevel", "warning")
        try:
            with api_process(infra, workdir) as url:
                tok = token_for(infra.valkey.url, freshness.PROBE_ORG)
                figures.append(
                    freshness.run(infra.broker.bootstrap, url, tok, 2000.0, size.fresh_seconds)
                )
                console.print(f"[bold]push[/bold]: {size.stream_clients} stream clients")
                figures += streams.run(infra.broker.bootstrap, url, tok, size.stream_clients)
        finally:
            worker.stop()

    # Stack B: a big and a small campaign for memory, reads and reconciliation.
    with EmbeddedInfra(Settings(topic_partitions=6)) as infra:
        big = dataset.Campaign("cmp_big", size.big, 200)
        small = dataset.Campaign("cmp_small", 1_000, 50)
        console.print("[bold]memory[/bold]: B/contact by campaign size")
        figures += memory.figures(memory.table(infra.valkey.url, quick=quick, console=console))
        figures.append(memory.series_day(infra.valkey.url))
        figures.append(memory.series_year(infra.valkey.url))
        redis.Redis.from_url(infra.valkey.url).flushall()
        console.print(
            f"[bold]reads and reconciliation[/bold]: {big.contacts:,} + {small.contacts:,} contacts"
        )
        dataset.load(infra.broker.bootstrap, infra.valkey.url, [big, small], console)
        contacts = big.contacts + small.contacts
        figures += read_figures(infra, size, workdir, big, small, console)
        console.print("[bold]reconciliation[/bold]: full recompute")
        settings = Settings(
            kafka_bootstrap_servers=infra.broker.bootstrap, redis_url=infra.valkey.url
        )

        async def reconcile() -> float:
            store = Store(connect(settings))
            try:
                report = await Reconciler(store, KafkaLogSource(settings)).run()
                assert report.totals()["campaigns_with_drift"] == 0, report.totals()
                return report.duration_seconds
            finally:
                await store.close()

        with latency.watch(infra.valkey.url, slower_than_us=1000) as redis_calls:
            seconds = asyncio.run(reconcile())
        rate = contacts / seconds
        figures.append(
            Figure(
                f"reconciliation: full recompute of {contacts:,} contacts",
                rate,
                "contacts/s",
                ingest_rate,
                "ingest events/s",
                rate / ingest_rate,
                "",
                None,
                f"{seconds:.1f} s for {contacts * 2 + 250:,} events (contacts and call records);"
                f" {redis_calls.describe()}",
            )
        )
        figures.append(
            Figure(
                "reconciliation: longest Redis call",
                redis_calls.longest_ms,
                "ms",
                None,
                "",
                None,
                "<= 50 ms",
                redis_calls.longest_ms <= 50,
                f"during the full recompute of {contacts:,} contacts ({redis_calls.longest};"
                f" SLOWLOG, calls over 1 ms); max PING from another connection"
                f" {redis_calls.ping_max_ms:.1f} ms",
            )
        )

    # Stack C: reconciliation from the dialer's database into an empty Redis.
    with EmbeddedInfra(Settings(topic_partitions=6)) as infra:
        console.print(f"[bold]reconciliation from MongoDB[/bold]: {size.database:,} contacts")
        figures.append(database.run(infra, workdir, size.database, console))
    return report(quick, started, figures)


def report(quick: bool, started: float, figures: list[Figure]) -> dict[str, Any]:
    return {
        "quick": quick,
        "machine": machine(),
        "duration_seconds": round(time.monotonic() - started, 1),
        "figures": [f.to_dict() for f in figures],
    }


def read_path(size: Sizes, workdir: Path, console: Console) -> list[Figure]:
    """Only the read figures, on the read dataset (`bench --reads-only`)."""
    with EmbeddedInfra(Settings(topic_partitions=6)) as infra:
        big = dataset.Campaign("cmp_big", size.big, 200)
        small = dataset.Campaign("cmp_small", 1_000, 50)
        console.print(f"[bold]reads[/bold]: {big.contacts:,} + {small.contacts:,} contacts")
        dataset.load(infra.broker.bootstrap, infra.valkey.url, [big, small], console)
        return read_figures(infra, size, workdir, big, small, console)


def read_figures(
    infra: EmbeddedInfra,
    size: Sizes,
    workdir: Path,
    big: dataset.Campaign,
    small: dataset.Campaign,
    console: Console,
) -> list[Figure]:
    """Latency at both sizes and the incumbent's recount, then throughput against the
    bare ASGI reference, at one process and at one per core."""
    tok = token_for(infra.valkey.url, dataset.ORG)
    with api_process(infra, workdir) as url:
        figures = reads.run(
            url, tok, infra.valkey.url, big.campaign_id, small.campaign_id,
            size.requests, size.recounts,
        )  # fmt: skip
    console.print(
        f"[bold]read throughput[/bold]: {size.read_rounds} x {size.read_requests:,} requests"
        " per read and server, 50 keep-alive clients"
    )
    figures += reads.throughput(
        infra, workdir, tok, big.campaign_id, size.read_requests, size.read_rounds
    )
    return figures


def render(report: dict[str, Any], console: Console) -> None:
    table = Table(title="dialer-stats bench" + (" (quick)" if report["quick"] else ""))
    for column in ("figure", "value", "reference", "ratio", "target", "met"):
        table.add_column(column, justify="right" if column in ("value", "ratio") else "left")
    for f in report["figures"]:
        reference = f"{f['reference']:,.2f} ({f['reference_name']})" if f["reference"] else "-"
        ratio = f"{f['ratio']:.3g}x" if f["ratio"] is not None else "-"
        met = {True: "yes", False: "NO", None: "-"}[f["met"]]
        table.add_row(
            f["name"], f"{f['value']:,.2f} {f['unit']}", reference, ratio, f["target"] or "-", met
        )
    console.print(table)
    for f in report["figures"]:
        if f["note"]:
            console.print(f"- {f['name']}: {f['note']}", highlight=False)
    m = report["machine"]
    console.print(
        f"{m['cpus']} CPUs, Python {m['python']}, {m['platform']}; {report['duration_seconds']} s"
    )


def main(*, quick: bool, as_json: bool, reads_only: bool = False) -> None:
    err = Console(stderr=True)
    result = run(quick=quick, console=err, reads_only=reads_only)
    if as_json:
        print(json.dumps(result))
    else:
        render(result, Console(width=200) if not Console().is_terminal else Console())
