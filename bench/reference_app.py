"""The read path's reference: a bare ASGI app under the same uvicorn as the API.

Per request it does what a stats read cannot do less of: one HGETALL of a campaign's stats
hash, rendered as JSON. No framework, no auth, no metrics. Run as
`python -m bench.reference_app --port P --redis-url URL --key KEY`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

_MODULE = [sys.executable, "-m", "bench.reference_app"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def reference_app(redis_url: str, key: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app answering every request with the hash at `key` as a JSON object."""
    client: aioredis.Redis | None = None

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal client
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            if client is not None:
                await client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if client is None:
            client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        body = json.dumps(await client.hgetall(key), separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


@contextmanager
def serve(redis_url: str, key: str, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The reference app as its own process on `port`, once it answers."""
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [*_MODULE, "--port", str(port), "--redis-url", redis_url, "--key", key],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"the reference app did not start: see {log}")
                time.sleep(0.1)
            yield process
        finally:
            process.terminate()
            process.wait(timeout=20)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    # The same uvicorn settings as `dialer-stats api` (its loop and HTTP parser too).
    uvicorn.run(
        reference_app(args.redis_url, args.key),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
