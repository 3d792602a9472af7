"""Time series of call records, as the API reads them: buckets by occurred_at."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress

import msgspec

from processors.store import keys
from processors.store.base import StoreBase

#: Decodes the store's own decimal fields and `|`-joined numbers, many at a time.
_INTS = msgspec.json.Decoder(list[int])


def _series_row(row: dict[str, str]) -> list[tuple[int, tuple[int, ...]]]:
    """A series hash's (slot, six numbers) pairs: fields and values parsed at once (1,440
    buckets a day) when every value is six `|`-joined parts, else field by field. A field
    that is not a slot with six integers (an edit by hand) is left out: it never shifts
    another bucket's numbers, and the recount (RECOUNT_SERIES) puts it right."""
    if not row:
        return []
    if all(value.count("|") == 5 for value in row.values()):
        try:
            slots = _INTS.decode(f"[{','.join(row)}]")
            values = _INTS.decode(f"[{','.join(row.values())}]".replace("|", ","))
        except msgspec.DecodeError:
            pass
        else:
            if len(slots) == len(row) and len(values) == 6 * len(row):
                return [(slot, tuple(values[6 * i : 6 * i + 6])) for i, slot in enumerate(slots)]
    out: list[tuple[int, tuple[int, ...]]] = []
    for field, value in row.items():
        with suppress(ValueError):
            numbers = tuple(int(part) for part in value.split("|"))
            if len(numbers) == 6:
                out.append((int(field), numbers))
    return out


class Series(StoreBase):
    """Minute and quarter-hour buckets of call records."""

    async def series(
        self, campaign_id: str, resolution: str, start_ms: int, end_ms: int
    ) -> dict[int, Sequence[int]]:
        """Buckets of call records by occurred_at, `m` (minute) or `q` (quarter hour), that
        start in [start_ms, end_ms): bucket start (ms since the epoch) -> (completed, failed,
        busy, no_answer, follow_up, talk ms). Buckets with no call are absent."""
        return (await self.series_of([campaign_id], resolution, start_ms, end_ms))[campaign_id]

    async def series_of(
        self, campaign_ids: Sequence[str], resolution: str, start_ms: int, end_ms: int
    ) -> dict[str, dict[int, Sequence[int]]]:
        """`series` of several campaigns, read in one pipeline."""
        step, span = (60_000, 3_600_000) if resolution == "m" else (900_000, 86_400_000)
        first, last = start_ms // span, (end_ms - 1) // span
        out: dict[str, dict[int, Sequence[int]]] = {c: {} for c in campaign_ids}
        if last < first or not campaign_ids:
            return out
        key = keys.minute_series if resolution == "m" else keys.quarter_series
        numbers = range(first, last + 1)
        rows = iter(await self.hashes([key(c, n) for c in campaign_ids for n in numbers]))
        for campaign_id in campaign_ids:
            buckets = out[campaign_id]
            for number in numbers:
                for slot, bucket in _series_row(next(rows)):
                    start = number * span + slot * step
                    if start_ms <= start < end_ms:
                        buckets[start] = bucket
        return out
