"""The `dialer-stats` command line."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import Progress

from processors.settings import Settings
from processors.tools.signals import wait_for_signal

if TYPE_CHECKING:
    from processors.store.client import Store

T = TypeVar("T")

cli = typer.Typer(
    help="Live, exact campaign statistics for an outbound AI call dialer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
token_cli = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
cli.add_typer(token_cli, name="token")
err = Console(stderr=True)


def _settings() -> Settings:
    return Settings()


class Compression(StrEnum):
    """Codecs a producer may compress with."""

    none = "none"
    gzip = "gzip"
    snappy = "snappy"
    lz4 = "lz4"
    zstd = "zstd"


@cli.command()
def infra(
    kafka_port: Annotated[int, typer.Option(help="Broker port (0: any free port).")] = 9092,
    redis_port: Annotated[int, typer.Option(help="valkey port (0: any free port).")] = 6379,
) -> None:
    """Run only the embedded broker and valkey, with topics, until Ctrl-C."""
    from processors.tools.embedded import EmbeddedInfra

    with EmbeddedInfra(_settings(), kafka_port=kafka_port, redis_port=redis_port) as running:
        for name, value in running.env.items():
            print(f"{name}={value}", flush=True)
        wait_for_signal()


@cli.command()
def worker(
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run one faust worker."""
    from processors.worker.app import run_worker

    sys.argv = [sys.argv[0], "worker"]  # faust parses argv itself
    run_worker(_settings(), loglevel=loglevel)


@cli.command()
def api(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Processes sharing the port (default: one per core)."),
    ] = None,
) -> None:
    """Run the HTTP API."""
    from api.serve import default_workers, run

    settings = _settings()
    run(
        settings,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers or default_workers(),
    )


@cli.command()
def produce(
    file: Annotated[str, typer.Argument(help="JSON-lines file, or - for standard input.")],
    raw: Annotated[bool, typer.Option("--raw", help="Publish every line verbatim.")] = False,
    compression: Annotated[
        Compression | None,
        typer.Option(help="Compression codec (default: DIALER_STATS_COMPRESSION, else zstd)."),
    ] = None,
) -> None:
    """Publish JSON-lines events to their topics, keyed by entity id."""
    from processors.tools.produce import open_producer, publish, route_lines

    settings = _settings()
    if compression is not None:
        settings = settings.model_copy(update={"compression": compression.value})
    if file == "-":
        lines = sys.stdin.buffer.read().splitlines(keepends=True)
    else:
        path = Path(file)
        if not path.is_file():
            err.print(f"error: no such file: {file}")
            raise typer.Exit(2)
        lines = path.read_bytes().splitlines(keepends=True)
    outgoing, refused = route_lines(lines, settings, raw=raw, max_bytes=settings.max_message_bytes)
    for number, rejection in refused:
        err.print(f"line {number}: {rejection.reason}: {rejection.message}", highlight=False)

    async def run() -> None:
        producer = await open_producer(settings)
        try:
            with Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
                task = bar.add_task("publishing", total=len(outgoing))
                async for sent in publish(producer, outgoing):
                    bar.advance(task, sent)
        finally:
            await producer.stop()

    if outgoing:
        asyncio.run(run())
    err.print(f"published {len(outgoing)} messages, refused {len(refused)} lines")
    if refused:
        raise typer.Exit(1)


@cli.command()
def simulate(
    campaigns: Annotated[int, typer.Option(min=1, help="Number of campaigns.")] = 3,
    rate: Annotated[float, typer.Option(min=0.1, help="Events per second.")] = 200.0,
    organizations: Annotated[int, typer.Option(min=1, help="Number of organizations.")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    limit: Annotated[int, typer.Option(min=0, help="Stop after this many events (0: never).")] = 0,
    mongodb: Annotated[
        str | None,
        typer.Option(help="Also write the dialer's documents here (mongodb://HOST:PORT/DB)."),
    ] = None,
    drop_rate: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="With --mongodb: events lost before Kafka."),
    ] = 0.0,
    wall_clock: Annotated[
        bool,
        typer.Option(
            "--wall-clock",
            help="Event times from the wall clock, as live traffic (default: a simulated"
            " clock from 2026-05-08 09:00 UTC, reproducible by seed).",
        ),
    ] = False,
) -> None:
    """Generate realistic dialer traffic and publish it (and, with --mongodb, write the
    dialer's database first: a dual write, with --drop-rate gaps)."""
    settings = _settings()
    if drop_rate and not mongodb:
        err.print("error: --drop-rate needs --mongodb (the database keeps what Kafka loses)")
        raise typer.Exit(2)
    with suppress(KeyboardInterrupt):
        asyncio.run(
            _simulate(
                settings,
                campaigns,
                organizations,
                rate,
                seed,
                limit,
                mongodb,
                drop_rate,
                wall_clock,
            )
        )


async def _simulate(
    settings: Settings,
    campaigns: int,
    organizations: int,
    rate: float,
    seed: int,
    limit: int,
    mongodb: str | None = None,
    drop_rate: float = 0.0,
    wall_clock: bool = False,
) -> None:
    import itertools
    import json

    from processors.tools.dualwrite import DualWriter
    from processors.tools.produce import open_producer, route_raw
    from processors.tools.simulate import Simulation

    simulation = Simulation(
        campaigns=campaigns, organizations=organizations, seed=seed, wall_clock=wall_clock
    )
    writer = DualWriter(settings, mongodb, drop_rate=drop_rate, seed=seed) if mongodb else None
    producer = await open_producer(settings)
    err.print(
        "simulating "
        + ", ".join(f"{c.campaign_id} ({c.organization_id})" for c in simulation.campaigns)
    )
    # With a database every chunk is written before it is published (a tenth of a second
    # of traffic, so that the bulk writes keep up); without, event by event.
    chunk = max(1, int(rate / 10)) if writer else 1
    events = simulation.events()
    if limit:
        events = itertools.islice(events, limit)
    try:
        if writer is not None:
            await writer.start()
        started, n = time.monotonic(), 0
        while batch := list(itertools.islice(events, chunk)):
            n += len(batch)
            kept = await writer.write(batch) if writer is not None else batch
            for event in kept:
                message = route_raw(json.dumps(event).encode(), settings)
                await producer.send(message.topic, message.value, key=message.key)
            ahead = n / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
        if writer is not None:
            err.print(f"dropped {writer.dropped} of {n} events before Kafka")
            await writer.close()


@cli.command()
def reconcile(
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report drift, write nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON report on stdout.")] = False,
    every: Annotated[
        float | None, typer.Option(min=1, help="Run again every SECONDS until Ctrl-C.")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            help="log, or the dialer's database mongodb://HOST:PORT/DB "
            "[default: DIALER_STATS_RECONCILE_SOURCE, log]."
        ),
    ] = None,
) -> None:
    """Recompute every campaign from the source (event log or database), report drift,
    repair it."""
    from pydantic import ValidationError

    from processors.reconcile.cli import run

    settings = _settings()
    if source is not None:
        try:
            settings = Settings(**{**settings.model_dump(), "reconcile_source": source})
        except ValidationError:
            err.print(f"error: --source must be log or a mongodb:// URL, not {source!r}")
            raise typer.Exit(2) from None
    with suppress(KeyboardInterrupt):
        code = run(settings, campaign=campaign, dry_run=dry_run, as_json=as_json, every=every)
        if code:
            raise typer.Exit(code)


@cli.command()
def migrate(
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
) -> None:
    """Move state of the fixed 16,384-bucket layout (before growing buckets) into the
    current one, campaign by campaign, and recount each; safe to run again, and while
    workers run."""
    from rich.progress import track

    async def run(store: Store) -> int:
        campaigns = [campaign] if campaign else await store.legacy_campaigns()
        moved = 0
        for campaign_id in track(campaigns, description="migrating", console=err):
            moved += await store.migrate_campaign(campaign_id)
        err.print(f"{len(campaigns)} campaign(s) migrated, {moved:,} entity states moved")
        return moved

    _with_store(_settings(), run)


@cli.command()
def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="A small run (under two minutes).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    reads_only: Annotated[
        bool, typer.Option("--reads-only", help="Only the read path's figures.")
    ] = False,
) -> None:
    """Measure ingest, reads, freshness, memory and reconciliation against references."""
    from bench.suite import main as run_bench

    run_bench(quick=quick, as_json=as_json, reads_only=reads_only)


@token_cli.command("create")
def token_create(
    org: Annotated[str, typer.Option("--org", help="Organization the token belongs to.")],
) -> None:
    """Print one new token for an organization."""
    print(_with_store(_settings(), lambda store: store.create_token(org)))


@token_cli.command("revoke")
def token_revoke(token: Annotated[str, typer.Argument(help="The token to revoke.")]) -> None:
    """Revoke a token."""
    if not _with_store(_settings(), lambda store: store.revoke_token(token)):
        err.print("error: unknown token")
        raise typer.Exit(1)
    err.print("revoked")


@cli.command()
def up(
    campaigns: Annotated[int, typer.Option(min=1, help="Simulated campaigns.")] = 3,
    rate: Annotated[float, typer.Option(min=0.1, help="Simulated events per second.")] = 200.0,
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    embedded: Annotated[
        bool, typer.Option(help="Start the embedded broker and valkey (else use the env).")
    ] = True,
    mongodb: Annotated[
        str | None,
        typer.Option(
            help="The simulator also writes the dialer's documents here (mongodb://HOST:PORT/DB)"
            " and a reconciler repairs from it every --reconcile-every seconds."
        ),
    ] = None,
    drop_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="With --mongodb: events lost before Kafka.")
    ] = 0.01,
    reconcile_every: Annotated[
        float, typer.Option(min=5.0, help="With --mongodb: seconds between reconciliations.")
    ] = 60.0,
) -> None:
    """Run everything on one machine: broker, valkey, worker, API and the simulator."""
    from processors.tools import up as running

    running.run(
        _settings, lambda settings: _demo_token(settings, organization="org_0_0"),
        campaigns=campaigns, rate=rate, port=port, embedded=embedded, mongodb=mongodb,
        drop_rate=drop_rate, reconcile_every=reconcile_every,
    )  # fmt: skip


def _demo_token(settings: Settings, organization: str) -> str:
    return _with_store(settings, lambda store: store.create_token(organization))


def _with_store(settings: Settings, call: Callable[[Store], Awaitable[T]]) -> T:
    """Run one store call with a connection opened and closed around it."""
    from processors.store.client import Store, connect

    async def run() -> T:
        store = Store(connect(settings))
        try:
            return await call(store)
        finally:
            await store.close()

    return asyncio.run(run())


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
