"""The reconciliation lock is renewed while a run lasts; a run that loses it stops."""

from __future__ import annotations

import asyncio

import pytest

from processors.reconcile.lock import LockLost, run_holding
from processors.store.client import Store

KEY = "ds:test:lock"


async def test_a_run_longer_than_the_lock_keeps_it(store: Store) -> None:
    """A 1 s lock held through a 2.5 s run: nobody else can take it meanwhile."""
    lock = store.client.lock(KEY, timeout=1, blocking=False)
    assert await lock.acquire()
    other = store.client.lock(KEY, timeout=1, blocking=False)
    taken_by_other: list[bool] = []

    async def long_run() -> str:
        for _ in range(5):
            await asyncio.sleep(0.5)
            taken_by_other.append(await other.acquire())
        return "done"

    assert await run_holding(lock, 1, long_run()) == "done"
    assert taken_by_other == [False] * 5
    await lock.release()


async def test_a_run_that_loses_its_lock_is_stopped(store: Store) -> None:
    """The lock expired and another run took it: this run is cancelled, not overlapped."""
    lock = store.client.lock(KEY, timeout=1, blocking=False)
    assert await lock.acquire()
    finished: list[bool] = []

    async def long_run() -> None:
        await store.client.delete(KEY)  # expired while this process stalled
        other = store.client.lock(KEY, timeout=5, blocking=False)
        assert await other.acquire()
        await asyncio.sleep(3)
        finished.append(True)

    with pytest.raises(LockLost):
        await run_holding(lock, 1, long_run())
    assert finished == []
