"""nx-27017 (a MongoDB wire-protocol server on SQLite, from PyPI) as a child process on
loopback: a stand-in for the dialer's MongoDB in benchmarks and demos."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from processors import InfraError
from processors.tools.embedded import free_port


class NxMongo:
    """One nx-27017 server with its data under `data_dir`; use as a context manager."""

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.log = data_dir / "nx-27017.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._handle: Any = None

    def url(self, database: str) -> str:
        return f"mongodb://127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30.0) -> NxMongo:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.log, "wb")  # noqa: SIM115
        d = self.data_dir
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nx_27017.nx_27017", "--host", "127.0.0.1",
             "-p", str(self.port), "--data-dir", str(d / "db"),
             "--log-file", str(d / "server.log"), "--pid-file", str(d / "nx.pid")],
            stdout=self._handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.answers():
            if time.monotonic() > deadline:
                self.stop()
                raise InfraError(f"nx-27017 did not answer on 127.0.0.1:{self.port} in time")
            time.sleep(0.1)
        return self

    def answers(self) -> bool:
        """Whether the server answers `ping` (raises if it exited)."""
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        assert self.process is not None
        if self.process.poll() is not None:
            raise InfraError(
                f"nx-27017 exited with code {self.process.returncode}: "
                + self.log.read_text(errors="replace")[-2000:]
            )
        client: MongoClient[dict[str, Any]] = MongoClient(
            self.url("admin"), serverSelectionTimeoutMS=500
        )
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> NxMongo:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
