"""`dialer-stats up` (what `make run` starts) stopped the way a terminal stops it: Ctrl-C to
the whole foreground process group. It reaches `up` alone, which stops the simulator, API
and worker before the broker and valkey: a clean exit, every port closed, and no
connection errors from a worker whose broker went first."""

from __future__ import annotations

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
    response = httpx.get(
        f"http://127.0.0.1:{port}/api/v1/campaigns/cmp_0_0/stats",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    if response.status_code != 200:
        return 0
    return int(response.json()["total_call_attempts"]) + sum(
        response.json()["contact_counts"].values()
    )


def test_ctrl_c_stops_the_services_after_their_clients(tmp_path: Path) -> None:
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REDIS_"))}
    up = subprocess.Popen(
        [sys.executable, "-m", "processors.cli", "up", "--port", str(api_port),
         "--campaigns", "2", "--rate", "300"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**env, "PYTHONUNBUFFERED": "1"}, cwd=tmp_path,
        process_group=0,  # the "terminal's" foreground group: up and whatever shares it
    )  # fmt: skip
    assert up.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(line.decode(errors="replace") for line in up.stdout or ()),
        daemon=True,
    )
    reader.start()
    try:
        wait_until(lambda: any("Ctrl-C stops" in line for line in lines), timeout=120,
                   what="up to print its dashboard")  # fmt: skip
        printed = "".join(lines)
        kafka = int(re.search(r"KAFKA_BOOTSTRAP_SERVERS=[\d.]+:(\d+)", printed)[1])  # type: ignore[index]
        redis_port = int(re.search(r"REDIS_URL=redis://[\d.]+:(\d+)", printed)[1])  # type: ignore[index]
        ports = (api_port, kafka, redis_port)
        assert all(listening(p) for p in ports), printed
        token = re.search(r"Token \(organization org_0_0\): (\S+)", printed)[1]  # type: ignore[index]
        # stopped mid-flow, as a user watching the dashboard would: the worker is applying
        wait_until(lambda: applied(api_port, token) > 100, timeout=60, what="events applied")
        os.killpg(up.pid, signal.SIGINT)
        assert up.wait(timeout=90) == 0, "".join(lines)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
    reader.join(timeout=30)
    after = "".join(lines)
    assert not BROKER_GONE.search(after), after
    assert not any(listening(p) for p in ports)
