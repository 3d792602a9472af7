"""One reconciler at a time: a Redis lock renewed while the run lasts.

A run may outlast the lock's expiry (a big campaign, a slow source). The lock is renewed
every third of its timeout while the run goes on; if a renewal finds the lock gone or
taken by another run (this process stalled past the expiry), the run is cancelled rather
than allowed to overlap the other one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

from redis.exceptions import LockError

log = logging.getLogger(__name__)
T = TypeVar("T")


class LockLost(Exception):
    """The lock expired or was taken by another run before this one finished."""


async def run_holding(lock: Any, seconds: float, work: Awaitable[T]) -> T:
    """Await `work` while renewing the held `lock` (its timeout: `seconds`)."""
    task = asyncio.ensure_future(work)
    lost = asyncio.Event()

    async def renew() -> None:
        while True:
            await asyncio.sleep(seconds / 3)
            try:
                await lock.reacquire()
            except LockError:
                log.error("the reconciliation lock was lost; stopping this run")
                lost.set()
                task.cancel()
                return

    renewer = asyncio.ensure_future(renew())
    try:
        return await task
    except asyncio.CancelledError:
        if lost.is_set():
            raise LockLost("the reconciliation lock was lost before the run finished") from None
        raise
    finally:
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
