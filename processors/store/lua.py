"""Every Lua script dialer-stats runs, loaded from `scripts/` (one `.lua` file each, with its
KEYS / ARGV / return contract at the top, checked by luacheck).

Every script gets the campaign's fixed keys in KEYS (`campaign_keys`); all of them share the
`{campaign_id}` hash tag, so each call touches one Redis Cluster slot. Entity keys -- state
buckets, the batches hash, and batches still in hashes of their own -- are built inside the
scripts from the stats key's tag (the same tag, so the same slot), because only the script
knows them: the bucket an entity lives in depends on how far the campaign's buckets have
grown (linear hashing, see `keys.LOAD`), and the batch a contact leaves is named only by its
stored state. The scripts share one prelude of helpers (`prelude.lua`), after the batch
state codec (`batch_codec.lua`), so a transition and the layout are written once; the
recount scripts share `count_buckets.lua` and `compare.lua` too.

A script is `constants()` -- the contract's tables and the key layout as Lua locals, made
here from the Python constants so the two never disagree -- then the shared files it uses,
then its own.

Entity state, per bucket hash (listpack-encoded):
- contact: digest -> `version|status code|retry_count|batch number` (and `|minute` for a
  terminal status)
- call record: digest -> `version|status code|follow-up flag|minute|talk ms`
Digests are `keys.digest` of the dialer's ids; batch numbers are per campaign, in the layout
hash (`keys.layout`), and never reused.

A chunked recount (RECOUNT_BEGIN, RECOUNT_STEP, RECOUNT_END) counts the buckets a few at a
time into a shadow hash; while it runs, every change to an entity in a bucket it has already
counted is mirrored into the shadow, so at the end the shadow holds what the counters should
be at that instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from processors.domain.contract import (
    BATCH_BY_CODE,
    BATCH_STATUSES,
    CALL_BY_CODE,
    CALL_STATUSES,
    CONTACT_BY_CODE,
    CONTACT_CODES,
    TERMINAL_STATUSES,
)
from processors.store import keys

#: Fixed KEYS of every script: stats, fence, layout, shadow, batch index, per-status indexes.
FIXED_KEYS: Final = 5 + len(BATCH_STATUSES)
FIELDS_PER_EVENT: Final = 12

#: Separators of the APPLY_SLICE payload (ids and statuses never contain them).
EVENT_SEP: Final = "\x1e"
FIELD_SEP: Final = "\x1f"

SCRIPTS: Final = Path(__file__).resolve().parent / "scripts"


def campaign_keys(campaign_id: str) -> list[str]:
    """KEYS of every script: stats, fence, layout, shadow, batch index, per-status indexes."""
    fixed = [
        keys.stats(campaign_id),
        keys.fence(campaign_id),
        keys.layout(campaign_id),
        keys.shadow(campaign_id),
        keys.batch_index(campaign_id),
    ]
    fixed.extend(keys.batch_index(campaign_id, status) for status in BATCH_STATUSES)
    return fixed


def _table(mapping: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}='{v}'" for k, v in mapping.items()) + "}"


def constants() -> str:
    """The Lua locals every script starts with (the names `.luacheckrc` declares)."""
    slots = ", ".join(f"{s}={6 + i}" for i, s in enumerate(BATCH_STATUSES))  # KEYS[6...]
    series_slots = {s: str(i + 1) for i, s in enumerate(CALL_STATUSES)}
    lines = [
        "-- made by processors/store/lua.py from the Python contract",
        f"local BIDX_BY_STATUS = {{{slots}}}",
        f"local CONTACT = {_table(CONTACT_BY_CODE)}",
        f"local CALL = {_table(CALL_BY_CODE)}",
        f"local BATCH = {_table(BATCH_BY_CODE)}",
        "local CONTACT_ORDER = {" + ", ".join(f"'{c}'" for c in CONTACT_BY_CODE) + "}",
        f"local LOAD, ONE_BUCKET, HASH_MOD = {keys.LOAD}, {keys.ONE_BUCKET}, {2**keys.HASH_BITS}",
        f"local STATS_PART, BATCHES_PART = '{keys.STATS_PART}', '{keys.BATCHES_PART}'",
        f"local BATCH_PART = '{keys.BATCH_PART}'",
        f"local CONTACT_BUCKET_PART = '{keys.CONTACT_BUCKET_PART}'",
        f"local RECORD_BUCKET_PART = '{keys.RECORD_BUCKET_PART}'",
        f"local SERIES_INDEX_PART = '{keys.SERIES_INDEX_PART}'",
        f"local PROGRESS_PART = '{keys.PROGRESS_PART}'",
        f"local SERIES_SLOT = {_table(series_slots)}",
        f"local RETAIN = {{m = {keys.MINUTE_RETENTION_MS}, q = {keys.QUARTER_RETENTION_MS}}}",
        f"local TERMINAL = {_table({CONTACT_CODES[s]: 'true' for s in TERMINAL_STATUSES})}",
        f"local PROGRESS_RETAIN = {keys.PROGRESS_RETENTION_MS}",
        f"local FIELDS_PER_EVENT = {FIELDS_PER_EVENT}",
    ]
    return "\n".join(lines) + "\n"


def script(*files: str) -> str:
    """The constants, then the named files of `scripts/` (without `.lua`), in order."""
    return constants() + "".join((SCRIPTS / f"{name}.lua").read_text() for name in files)


_PRELUDE = ("batch_codec", "prelude")
_RECOUNT = (*_PRELUDE, "count_buckets", "compare")

APPLY_SLICE: Final = script(*_PRELUDE, "apply_slice")
LOOKUP: Final = script(*_PRELUDE, "lookup")
REMOVE_ENTITIES: Final = script(*_PRELUDE, "remove_entities")
MIGRATE_STATES: Final = script(*_PRELUDE, "migrate_states")
RECOUNT_BEGIN: Final = script(*_PRELUDE, "recount_begin")
RECOUNT_STEP: Final = script(*_PRELUDE, "count_buckets", "recount_step")
RECOUNT_BATCHES: Final = script(*_RECOUNT, "recount_batches")
RECOUNT_SERIES: Final = script(*_RECOUNT, "recount_series")
RECOUNT_END: Final = script(*_RECOUNT, "recount_end")
BATCH_PAGE: Final = script("batch_codec", "batch_page")
BATCH_STATES: Final = script("batch_codec", "batch_states")
BATCH_PROGRESS: Final = script("batch_codec", "batch_progress")
