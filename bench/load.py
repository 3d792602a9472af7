"""A closed-loop HTTP/1.1 load generator: N keep-alive clients, each sending its next
request when the previous answer is complete (what `ab -k -c N` does).

Callback-based on the event loop (uvloop when installed) so that the generator costs a
fraction of what the server it measures spends per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench.harness import percentile


@dataclass(frozen=True)
class Load:
    """What one run measured."""

    requests: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)


class _Client(asyncio.Protocol):
    """One keep-alive connection sending `request` again as soon as each answer is in."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.buffer = b""
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        if not self.run.take():
            self.transport.close()
            return
        self.sent_at = time.perf_counter()
        self.transport.write(self.run.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            status = int(head[9:12])
            self.buffer = self.buffer[end:]
            self.run.done(status, time.perf_counter() - self.sent_at)
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.closed(exc)


class _Run:
    def __init__(self, request: bytes, total: int, status: int, clients: int) -> None:
        self.request = request
        self.left = total
        self.status = status
        self.latencies: list[float] = []
        self.open = clients
        self.finished = asyncio.get_running_loop().create_future()
        self.error: str | None = None

    def take(self) -> bool:
        if self.left <= 0 or self.error:
            return False
        self.left -= 1
        return True

    def done(self, status: int, seconds: float) -> None:
        if status != self.status and self.error is None:
            self.error = f"answered {status}, expected {self.status}"
        self.latencies.append(seconds * 1000)

    def closed(self, exc: Exception | None) -> None:
        if exc is not None and self.error is None:
            self.error = f"connection lost: {exc}"
        self.open -= 1
        if self.open == 0 and not self.finished.done():
            self.finished.set_result(None)


async def _load(url: str, headers: dict[str, str], total: int, clients: int, status: int) -> Load:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    run = _Run(request, total, status, clients)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    for _ in range(clients):
        await loop.create_connection(lambda: _Client(run), host, port)
    await run.finished
    seconds = time.perf_counter() - started
    if run.error:
        raise RuntimeError(f"GET {url}: {run.error}")
    return Load(len(run.latencies), seconds, run.latencies)


def load(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    total: int,
    clients: int = 50,
    status: int = 200,
) -> Load:
    """`total` GETs of `url` over `clients` keep-alive connections; every answer must be
    `status`."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with suppress(ImportError):  # uvloop comes with uvicorn[standard]
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_load(url, headers or {}, total, clients, status))
