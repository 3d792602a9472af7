"""Shared pieces of the benchmark: figures, percentiles, child processes, data loading."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from processors.tools.embedded import EmbeddedInfra, free_port
from processors.tools.produce import Outgoing

CLI = [sys.executable, "-m", "processors.cli"]


@dataclass
class Figure:
    """One measured figure and how it compares with its reference."""

    name: str
    value: float
    unit: str
    reference: float | None = None
    reference_name: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def progress(console: Any) -> Progress:
    """A progress display on stderr (silent when not a terminal)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


async def publish_all(
    bootstrap: str,
    messages: list[Outgoing],
    tick: Callable[[int], None] | None = None,
    *,
    compression: str | None = None,
) -> float:
    """Publish messages as fast as the broker takes them; returns messages per second."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        max_batch_size=512 * 1024,
        acks=1,
        compression_type=compression,
    )
    await producer.start()
    started = time.perf_counter()
    try:
        pending: list[asyncio.Future[Any]] = []
        for message in messages:
            pending.append(await producer.send(message.topic, message.value, key=message.key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                if tick:
                    tick(len(pending))
                pending = []
        await asyncio.gather(*pending)
        if tick:
            tick(len(pending))
    finally:
        await producer.stop()
    return len(messages) / (time.perf_counter() - started)


class Child:
    """A `dialer-stats` child process with its own log file."""

    def __init__(self, infra: EmbeddedInfra, log: Path, *args: str, **env: str) -> None:
        self.log = log
        self._handle = open(log, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [*CLI, *args],
            env={**os.environ, **infra.env, **env},
            stdout=self._handle,
            stderr=subprocess.STDOUT,
        )

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._handle.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def api_process(infra: EmbeddedInfra, workdir: Path) -> Iterator[str]:
    """The API as its own process; yields its base URL once it answers."""
    port = free_port()
    # one process (not one per core): the figures measured through it say "one API process"
    child = Child(infra, workdir / "api.log", "api", "--port", str(port), "--workers", "1")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.1)
        yield url
    finally:
        child.stop()
