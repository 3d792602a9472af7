"""The longest Redis call during a run: the server's SLOWLOG, and a PING probe from its own
process and connection (what any other client waits at worst)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

#: Pause between two PINGs of the probe (s).
PROBE_GAP = 0.002


def probe(redis_url: str) -> None:
    """PING from its own process and connection until stdin closes; prints the longest
    round trip (s) and the number of PINGs."""
    done = threading.Event()

    def wait_stdin() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    client = redis.Redis.from_url(redis_url)
    client.ping()
    print("ready", flush=True)
    worst, count = 0.0, 0
    while not done.is_set():
        started = time.perf_counter()
        client.ping()
        worst = max(worst, time.perf_counter() - started)
        count += 1
        time.sleep(PROBE_GAP)
    client.close()
    print(worst, count, flush=True)


def _name(command: str | bytes) -> str:
    text = command.decode(errors="replace") if isinstance(command, bytes) else command
    return text.split(" ", 1)[0].upper()


@dataclass
class Watch:
    """What `watch` saw: the longest call, the commands logged, the probe's worst PING."""

    longest_ms: float = 0.0
    longest: str = ""
    calls: Counter[str] = field(default_factory=Counter)
    ping_max_ms: float = 0.0
    pings: int = 0

    def describe(self) -> str:
        top = ", ".join(f"{n:,} {name}" for name, n in self.calls.most_common(3))
        return (
            f"longest Redis call {self.longest_ms:.1f} ms ({self.longest}; SLOWLOG: "
            f"{sum(self.calls.values()):,} calls logged besides PING, incl. inside scripts:"
            f" {top}); max PING round trip from another connection {self.ping_max_ms:.1f} ms"
            f" over {self.pings:,} pings"
        )


@contextmanager
def watch(redis_url: str, slower_than_us: int = 0) -> Iterator[Watch]:
    """Log every call slower than `slower_than_us` and PING from another process while the
    block runs; the result is filled in when it ends."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.config_set("slowlog-log-slower-than", slower_than_us)
    client.config_set("slowlog-max-len", 1_000_000)
    client.slowlog_reset()
    code = f"from bench.latency import probe; probe({redis_url!r})"
    prober = subprocess.Popen(
        [sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert prober.stdin is not None and prober.stdout is not None
    assert prober.stdout.readline().strip() == "ready"  # pinging before the block starts
    seen = Watch()
    try:
        yield seen
    finally:
        answer, _ = prober.communicate(timeout=30)  # closes stdin: the probe stops
        worst, count = answer.split()
        seen.ping_max_ms, seen.pings = float(worst) * 1000, int(count)
        slow = client.slowlog_get(-1)
        client.config_set("slowlog-log-slower-than", 10_000)
        client.config_set("slowlog-max-len", 128)
        client.close()
        if slow:
            longest = max(slow, key=lambda e: int(e["duration"]))
            seen.longest_ms = int(longest["duration"]) / 1000
            seen.longest = _name(longest["command"])
        seen.calls = Counter(_name(e["command"]) for e in slow)
        seen.calls.pop("PING", None)
