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


def printed(lines: list[str], pattern: str) -> str:
    match = re.search(pattern, "".join(lines), re.MULTILINE)
    assert match, "".join(lines)
    return match[1]


def test_ctrl_c_stops_the_services_after_their_clients(tmp_path: Path) -> None:
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REDIS_"))}
    up = subprocess.Popen(
        [sys.executable, "-m", "processors.cli", "up", "--port", str(api_port),
         "--campaigns", "2", "--rate", "300"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**env, "PYTHONUNBUFFERED": "1"}, cwd=tmp_path,
        # a session of its own, like a terminal's: its foreground process group is up alone
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(line.decode(errors="replace") for line in up.stdout or ()),
        daemon=True,
    )
    reader.start()
    try:
        wait_until(lambda: any("Ctrl-C stops" in line for line in lines), timeout=120,
                   what="up to print its dashboard")  # fmt: skip
        kafka = int(printed(lines, r"^KAFKA_BOOTSTRAP_SERVERS=[\d.]+:(\d+)$"))
        redis_port = int(printed(lines, r"^REDIS_URL=redis://[\d.]+:(\d+)/\d+$"))
        token = printed(lines, r"^Token \(organization org_0_0\): (\S+)$")
        ports = (api_port, kafka, redis_port)
        assert all(listening(p) for p in ports), "".join(lines)
        # stopped mid-flow, as a user watching the dashboard would: the worker is applying
        wait_until(lambda: applied(api_port, token) > 100, timeout=60, what="events applied")
        os.killpg(up.pid, signal.SIGINT)  # the terminal's Ctrl-C
        assert up.wait(timeout=90) == 0, "".join(lines)
        wait_until(lambda: not session_members(up.pid), timeout=30, what="every child gone")
    finally:
        for pid in session_members(up.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    reader.join(timeout=30)
    after = "".join(lines)
    assert not BROKER_GONE.search(after), after
    assert not any(listening(p) for p in ports)


def test_up_killed_outright_leaves_nothing_running(tmp_path: Path) -> None:
    """However `up` ends -- here SIGKILL, no chance to clean up -- its children end with it
    (each is told on its parent's death), though each has a process group of its own."""
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REDIS_"))}
    up = subprocess.Popen(
        [sys.executable, "-m", "processors.cli", "up", "--port", str(api_port),
         "--campaigns", "1", "--rate", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**env, "PYTHONUNBUFFERED": "1"}, cwd=tmp_path, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(line.decode(errors="replace") for line in up.stdout or ()),
        daemon=True,
    )
    reader.start()
    try:
        wait_until(lambda: any("Ctrl-C stops" in line for line in lines), timeout=120,
                   what="up to print its dashboard")  # fmt: skip
        assert len(session_members(up.pid)) >= 5  # up, broker, valkey, worker, API, simulator
        up.kill()
        up.wait(timeout=10)
        wait_until(lambda: not session_members(up.pid), timeout=60, what="every child gone")
    finally:
        for pid in session_members(up.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not listening(api_port)
