"""Announcements count each campaign's changes for its organization's rollup, on fakeredis
and real valkey, whatever the campaign ids."""

from __future__ import annotations

from processors.store import keys
from processors.store.client import Store


async def test_every_campaign_id_is_counted_beside_the_life_and_the_sum(store: Store) -> None:
    """Campaign ids are whatever `ID_PATTERN` allows, `life` and `life-like` names too: each
    is counted by itself, the life is set once and the sum moves by each change."""
    owners = {"life": "org_a", "lif": "org_a", "cmp_b": "org_a"}
    await store.announce(owners, owners)
    first = await store.client.hgetall(keys.org_changes("org_a"))
    await store.announce(["life", "cmp_b"], {"life": "org_a", "cmp_b": "org_a"})
    second = await store.client.hgetall(keys.org_changes("org_a"))

    life = first.pop(keys.CHANGES_LIFE)
    assert life and second.pop(keys.CHANGES_LIFE) == life
    assert first == {"life": "1", "lif": "1", "cmp_b": "1", keys.CHANGES_SUM: "3"}
    assert second == {"life": "2", "lif": "1", "cmp_b": "2", keys.CHANGES_SUM: "5"}
