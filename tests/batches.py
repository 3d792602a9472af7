"""Batch states in Redis as the tests read and write them: read through the store (as the
API and reconciliation read them), and written straight into Redis to make drift or a
batch of the layout before the batches hash -- packed by this module's own encoding of the
documented format (`processors.domain.batchstate`), which so checks the scripts' too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from processors.store import keys
from processors.store.client import Store
from tests.oracle import BATCH, CONTACT

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    digits = ""
    while n:
        n, r = divmod(n, 36)
        digits = _DIGITS[r] + digits
    return digits or "0"


def pack(fields: Mapping[str, Any]) -> str:
    """`status code|version|total|created_us base 36|known|counts|retries`."""
    status = fields.get("s")
    code = chr(ord("a") + BATCH.index(status)) if status else ""
    created = _base36(int(fields["created_us"])) if "created_us" in fields else ""
    counts = "".join(
        f"{chr(ord('a') + n)}{int(fields[f'contacts:{s}'])}"
        for n, s in enumerate(CONTACT)
        if int(fields.get(f"contacts:{s}", 0))
    )
    retries = sorted(
        (int(name[6:]), int(v))
        for name, v in fields.items()
        if name.startswith("retry:") and int(v)
    )
    known = str(int(fields["known"])) if int(fields.get("known", 0)) else ""
    parts = (code, str(fields.get("v", "")), str(fields.get("total", "")), created, known)
    return "|".join((*parts, counts, ",".join(f"{r}:{n}" for r, n in retries)))


async def fields(store: Store, campaign_id: str, batch_id: str) -> dict[str, str]:
    """The batch's fields by name ({} for none), as the store reads them."""
    (row,) = await store.batch_states(campaign_id, [batch_id])
    return row


async def exists(client: Any, campaign_id: str, batch_id: str) -> bool:
    """Whether the batch has a state, in the batches hash or a hash of its own."""
    in_hash = await client.hexists(keys.batches(campaign_id), batch_id)
    return bool(in_hash or await client.exists(keys.legacy_batch(campaign_id, batch_id)))


async def write(client: Any, campaign_id: str, batch_id: str, row: Mapping[str, Any]) -> None:
    """Put `row` (fields by name) as the batch's state."""
    await client.hset(keys.batches(campaign_id), batch_id, pack(row))


async def change(store: Store, campaign_id: str, batch_id: str, deltas: Mapping[str, int]) -> None:
    """Add to some counters of the batch (field -> delta), as a drifted counter would be."""
    row: dict[str, Any] = dict(await fields(store, campaign_id, batch_id))
    for field, by in deltas.items():
        row[field] = int(row.get(field, 0)) + by
    await write(store.client, campaign_id, batch_id, row)


async def to_own_hash(
    store: Store, campaign_id: str, batch_id: str, row: Mapping[str, Any] | None = None
) -> None:
    """Move the batch into a hash of its own (`keys.legacy_batch`), as batches were kept
    before the batches hash: `row`, or the batch's fields as they are."""
    own = dict(row if row is not None else await fields(store, campaign_id, batch_id))
    await store.client.hdel(keys.batches(campaign_id), batch_id)
    await store.client.hset(keys.legacy_batch(campaign_id, batch_id), mapping=own)
