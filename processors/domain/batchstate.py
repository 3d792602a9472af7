"""A batch's state as the scripts store it: one field of its campaign's batches hash
(`keys.batches`), packed so that a campaign's batches fit one compact hash (pure).

    status code|version|total|created_us|known|counts|retries

`status code` is the batch status's letter (`contract.BATCH_CODES`); `created_us` (the
index score: created_at in microseconds since the epoch) is in base 36; `counts` is a
contact status letter (`contract.CONTACT_CODES`) and its count, per status, run together
(`c12f3`); `retries` is `retry count:contacts` pairs joined by commas (`1:2,3:1`). A field
the batch does not have is empty, and counts of zero are left out. `created_at` is not
stored: it is `created_us` in ISO-8601 (`times.iso`), as the event's was made.

`unpack_batch` gives the fields by the names the views read, as a hash per batch held them
(`keys.legacy_batch`). The scripts' `batch_codec.lua` packs and unpacks the same way.
"""

from __future__ import annotations

import re
from typing import Final

from processors.domain.contract import BATCH_BY_CODE, CONTACT_BY_CODE
from processors.domain.times import from_epoch_us, iso

_COUNT: Final = re.compile(r"([a-z])(-?\d+)")


def unpack_batch(packed: str) -> dict[str, str]:
    """The batch's fields by name: `s`, `v`, `total`, `created_us`, `created_at`, `known`,
    `contacts:<status>`, `retry:<n>` (the ones it has)."""
    code, version, total, created, known, counts, retries = packed.split("|")
    fields: dict[str, str] = {}
    if code:
        fields["s"] = BATCH_BY_CODE[code]
    if version:
        fields["v"] = version
    if total:
        fields["total"] = total
    if created:
        us = int(created, 36)
        fields["created_us"] = str(us)
        fields["created_at"] = iso(from_epoch_us(us))
    if known:
        fields["known"] = known
    for letter, count in _COUNT.findall(counts):
        fields[f"contacts:{CONTACT_BY_CODE[letter]}"] = count
    for pair in filter(None, retries.split(",")):
        retry, count = pair.split(":")
        fields[f"retry:{retry}"] = count
    return fields
