"""Stuck-partition reports on fakeredis and real valkey (what /readyz shows)."""

from __future__ import annotations

import json

from processors.store import keys
from processors.store.client import STUCK_TTL_SECONDS, Store

STUCK = {"offset": 120, "reason": "UnsupportedCodecError: snappy", "since": 1.5, "retries": 3}


async def test_stuck_partitions_are_read_back_and_dropped(store: Store) -> None:
    """What a worker reports is read back; a recovered or revoked partition is dropped."""
    await store.set_stuck({"dialer.contacts:2": STUCK, "dialer.batches:0": {**STUCK, "offset": 7}})
    assert await store.stuck() == {
        "dialer.contacts:2": STUCK,
        "dialer.batches:0": {**STUCK, "offset": 7},
    }
    await store.drop_stuck(["dialer.batches:0"])
    assert await store.stuck() == {"dialer.contacts:2": STUCK}
    await store.drop_stuck([])
    assert list(await store.stuck()) == ["dialer.contacts:2"]


async def test_a_report_nobody_refreshes_is_ignored(store: Store) -> None:
    """A worker that died stuck leaves an entry that stops counting after the TTL; garbage
    in the hash is ignored too."""
    seconds, _ = await store.client.time()
    old = (int(seconds) - int(STUCK_TTL_SECONDS) - 5) * 1000
    await store.client.hset(
        keys.STUCK,
        mapping={
            "dialer.contacts:1": json.dumps({**STUCK, "reported_ms": old}),
            "dialer.contacts:3": "not json",
            "dialer.contacts:4": json.dumps({"offset": 1}),
        },
    )
    await store.set_stuck({"dialer.contacts:0": STUCK})
    assert await store.stuck() == {"dialer.contacts:0": STUCK}
