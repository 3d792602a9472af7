"""`dialer-stats up` (what `make run` starts) stopped the way a terminal stops it: Ctrl-C to
the whole foreground process group. It reaches `up` alone, which stops the simulator, API
and worker before the broker and valkey: a clean exit, every port closed, and no
connection errors from a worker whose broker went first."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from processors.tools.embedded import free_port
from tests.conftest import wait_until

#: What a worker logs when the broker goes before it does.
BROKER_GONE = re.compile(r"Unable connect|OffsetCommit|Connection refused|Traceback")


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def applied(port: int, token: str) -> int:
    """Contacts and call attempts the API shows for cmp_0_0 (0 while it cannot say)."""
    try:
        response = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/campaigns/cmp_0_0/stats",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
    except httpx.HTTPError:
        return 0
    if response.status_code != 200:
        return 0
    body = response.json()
    return int(body["total_call_attempts"]) + sum(body["contact_counts"].values())


def session_members(session: int) -> list[int]:
    """Processes of a session (a child in a process group of its own stays in it)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # after the name: state, ppid, pgrp, session
            members.append(int(stat.parent.name))
    return members


@dataclass
class Up:
    """A running `dialer-stats up` and what it has printed so far."""

    process: subprocess.Popen[bytes]
    port: int
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "".join(self.lines)

    def printed(self, pattern: str) -> str:
        match = re.search(pattern, self.output(), re.MULTILINE)
        assert match, self.output()
        return match[1]


@contextlib.contextmanager
def running_up(tmp_path: Path, *args: str) -> Iterator[Up]:
    """`dialer-stats up` in a session of its own, like a terminal's (its foreground
    process group is `up` alone), once it has printed its dashboard; whatever of the
    session is left at the end is killed."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REDIS_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "processors.cli", "up", "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**env, "PYTHONUNBUFFERED": "1"}, cwd=tmp_path, start_new_session=True,
    )  # fmt: skip
    up = Up(process, port)

    def read() -> None:
        up.lines.extend(line.decode(errors="replace") for line in process.stdout or ())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: "Ctrl-C stops" in up.output(), timeout=120,
                   what="up to print its dashboard")  # fmt: skip
        yield up
    finally:
        for pid in session_members(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        reader.join(timeout=30)


def test_ctrl_c_stops_the_services_after_their_clients(tmp_path: Path) -> None:
    with running_up(tmp_path, "--campaigns", "2", "--rate", "300") as up:
        kafka = int(up.printed(r"^KAFKA_BOOTSTRAP_SERVERS=[\d.]+:(\d+)$"))
        redis_port = int(up.printed(r"^REDIS_URL=redis://[\d.]+:(\d+)/\d+$"))
        token = up.printed(r"^Token \(organization org_0_0\): (\S+)$")
        ports = (up.port, kafka, redis_port)
        assert all(listening(p) for p in ports), up.output()
        # stopped mid-flow, as a user watching the dashboard would: the worker is applying
        wait_until(lambda: applied(up.port, token) > 100, timeout=60, what="events applied")
        os.killpg(up.process.pid, signal.SIGINT)  # the terminal's Ctrl-C
        assert up.process.wait(timeout=90) == 0, up.output()
        wait_until(lambda: not session_members(up.process.pid), timeout=30,
                   what="every child gone")  # fmt: skip
    assert not BROKER_GONE.search(up.output()), up.output()
    assert not any(listening(p) for p in ports)


def test_up_killed_outright_leaves_nothing_running(tmp_path: Path) -> None:
    """However `up` ends -- here SIGKILL, no chance to clean up -- its children end with it
    (each is told on its parent's death), though each has a process group of its own."""
    with running_up(tmp_path, "--campaigns", "1", "--rate", "50") as up:
        # up, broker, valkey, worker, API, simulator
        assert len(session_members(up.process.pid)) >= 5
        up.process.kill()
        up.process.wait(timeout=10)
        wait_until(lambda: not session_members(up.process.pid), timeout=60,
                   what="every child gone")  # fmt: skip
    assert not listening(up.port)
