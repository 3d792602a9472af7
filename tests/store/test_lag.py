"""Consumer lag entries on fakeredis and real valkey: they expire unless refreshed."""

from __future__ import annotations

from processors.store import keys
from processors.store.client import Store
from tests.conftest import async_wait_until


async def redis_ms(store: Store) -> int:
    seconds, micros = await store.client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_reported_lag_is_read_back(store: Store) -> None:
    """What the workers report is what /readyz reads; a refresh replaces the value."""
    await store.set_lag({"dialer.contacts:0": 7, "dialer.batches:1": 0})
    await store.set_lag({"dialer.contacts:0": 3})
    assert await store.lag() == {"dialer.contacts:0": 3, "dialer.batches:1": 0}


async def test_an_entry_not_refreshed_within_the_ttl_is_ignored_then_pruned(store: Store) -> None:
    """An entry older than the TTL (a partition nobody reports any more) is not read, and
    a writer's prune deletes it; so is an entry from before entries had timestamps."""
    old = await redis_ms(store) - int(store.lag_ttl * 1000) - 1000
    await store.client.hset(
        keys.LAG, mapping={"dialer.contacts:5": f"40:{old}", "dialer.contacts:6": "12"}
    )
    await store.set_lag({"dialer.contacts:0": 1})
    assert await store.lag() == {"dialer.contacts:0": 1}
    assert await store.client.hkeys(keys.LAG) == ["dialer.contacts:0"]


async def test_entries_expire_on_their_own(store: Store) -> None:
    """Without refreshes an entry disappears after the TTL, with nobody cleaning up."""
    short = Store(store.client, lag_ttl=0.3)
    await short.set_lag({"dialer.contacts:2": 9})
    assert await short.lag() == {"dialer.contacts:2": 9}

    async def gone() -> bool:
        return await short.lag() == {}

    await async_wait_until(gone, timeout=10, interval=0.05, what="the entry to expire")
    assert await store.lag() == {"dialer.contacts:2": 9}  # a longer TTL still reads it


async def test_drop_lag_forgets_only_the_partitions_named(store: Store) -> None:
    """On revocation a worker drops its partitions' entries; others stay; nothing is fine."""
    await store.set_lag({"dialer.contacts:0": 4, "dialer.contacts:1": 5, "dialer.batches:0": 6})
    await store.drop_lag(p for p in ["dialer.contacts:0", "dialer.batches:0", "dialer.x:9"])
    await store.drop_lag([])
    assert await store.lag() == {"dialer.contacts:1": 5}
