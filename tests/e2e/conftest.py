"""End-to-end fixtures: the embedded broker + valkey, worker and API processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from processors.settings import Settings
from processors.tools.embedded import EmbeddedInfra, free_port
from processors.tools.nxmongo import NxMongo
from tests.conftest import wait_until

CLI = [sys.executable, "-m", "processors.cli"]


@pytest.fixture(scope="session")
def infra() -> Iterator[EmbeddedInfra]:
    """A real Tansu broker and valkey-server for the e2e session."""
    with EmbeddedInfra(Settings(topic_partitions=4), kafka_port=0, redis_port=0) as running:
        yield running


def cli_env(infra: EmbeddedInfra, **extra: str) -> dict[str, str]:
    return {**os.environ, **infra.env, "DIALER_STATS_TOPIC_PARTITIONS": "4", **extra}


def run_cli(
    infra: EmbeddedInfra, *args: str, stdin: bytes | None = None, **extra: str
) -> subprocess.CompletedProcess[bytes]:
    """Run one `dialer-stats` command to completion."""
    return subprocess.run(
        [*CLI, *args], env=cli_env(infra, **extra), input=stdin, capture_output=True, timeout=120
    )


class Proc:
    """A long-running `dialer-stats` child process with its log."""

    def __init__(self, infra: EmbeddedInfra, log: Path, *args: str, **extra: str) -> None:
        self.log = log
        self.metrics_url = ""
        self.handle = open(log, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [*CLI, *args], env=cli_env(infra, **extra), stdout=self.handle, stderr=subprocess.STDOUT
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.handle.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def worker(infra: EmbeddedInfra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """One faust worker for the session."""
    port = free_port()
    proc = Proc(
        infra,
        tmp_path_factory.mktemp("worker") / "worker.log",
        "worker",
        DIALER_STATS_WORKER_METRICS_PORT=str(port),
    )
    proc.metrics_url = f"http://127.0.0.1:{port}/metrics"
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def api_url(infra: EmbeddedInfra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API as its own process."""
    port = free_port()
    proc = Proc(
        infra,
        tmp_path_factory.mktemp("api") / "api.log",
        "api",
        "--port",
        str(port),
        DIALER_STATS_STREAM_HEARTBEAT_SECONDS="1",
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout=30, what="the API to answer /healthz")
    yield url
    proc.stop()


def token(infra: EmbeddedInfra, org: str) -> str:
    """A token created through the CLI."""
    done = run_cli(infra, "token", "create", "--org", org)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().strip()


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list[Any]:
    """Every record of a topic, waiting until at least `expected` are there."""
    from aiokafka import AIOKafkaConsumer

    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        records: list[Any] = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while len(records) < expected and loop.time() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for part in batch.values():
                    records.extend(part)
            # anything beyond `expected` arrives in the same fetches or right after
            more = await consumer.getmany(timeout_ms=1000)
            for part in more.values():
                records.extend(part)
        finally:
            await consumer.stop()
        return records

    return asyncio.run(run())


@pytest.fixture(scope="session")
def mongo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NxMongo]:
    """A MongoDB wire-protocol server (nx-27017) on a free port for the session."""
    with NxMongo(tmp_path_factory.mktemp("nx27017")) as server:
        yield server
