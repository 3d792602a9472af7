"""Every Redis key name dialer-stats uses, in one place.

All keys of one campaign share the hash tag `{campaign_id}` so that each Lua call touches a
single Redis Cluster slot. Event ids are restricted to `[A-Za-z0-9_.-]` (see `events`), so
they can never break a tag or collide across key kinds.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Final

from processors.domain import contract

PREFIX: Final = "ds"

# Entity state (contacts, call records) lives in hash buckets that grow with the campaign
# by linear hashing: bucket `P` splits into `P` and `P + 2**L` whenever the campaign holds
# more than LOAD entities per bucket, one bucket at a time, inside the apply script. The
# busiest bucket then holds about 2 * LOAD fields, well inside Redis's compact listpack
# encoding (hash-max-listpack-entries defaults to 128).
LOAD: Final = 40
#: Until a campaign holds more entities of a kind than this, they share one bucket: a
#: small campaign pays one key per kind, not three or four (still under the 128 entries of
#: the compact encoding).
ONE_BUCKET: Final = 120
#: An entity's bucket is chosen by its digest modulo 2**HASH_BITS (then modulo 2**L).
HASH_BITS: Final = 30

#: The parts of a campaign's key names after its tag (the Lua scripts build entity keys
#: from the stats key with these).
STATS_PART: Final = "stats"
BATCHES_PART: Final = "bt"
#: The hash of one batch each, before a campaign's batches shared one (`batches`): read,
#: and moved on a batch's next change, by the scripts.
BATCH_PART: Final = "b:"
CONTACT_BUCKET_PART: Final = "cb:"
RECORD_BUCKET_PART: Final = "rb:"
#: Key parts of the layout before buckets grew (16,384 fixed buckets of plain ids), read
#: only by `dialer-stats migrate`.
LEGACY_BUCKETS: Final = 16384
LEGACY_CONTACT_PART: Final = "c:"
LEGACY_RECORD_PART: Final = "r:"


def _tag(campaign_id: str) -> str:
    return f"{PREFIX}:{{{campaign_id}}}"


def fresh_digest(entity_id: str) -> str:
    """The fixed-width name an entity's state is stored under: 63 bits of BLAKE2b, decimal.

    Redis keeps an integer-looking field as an 8-byte integer, so the dialer's ids cost the
    same whatever their length. Two ids of one campaign collide with probability about
    n**2 / 2**64 (5e-8 for a million contacts).
    """
    raw = hashlib.blake2b(entity_id.encode(), digest_size=8).digest()
    return str(int.from_bytes(raw, "big") >> 1)


#: `fresh_digest`, cached: reconciliation and the worker ask for the same ids again and again.
digest = lru_cache(maxsize=1 << 20)(fresh_digest)


def bucket_hash(entity_digest: str) -> int:
    """The digest modulo 2**HASH_BITS: what picks the bucket (the Lua scripts agree)."""
    return int(entity_digest) & ((1 << HASH_BITS) - 1)


def bucket_number(hashed: int, level: int, split: int) -> int:
    """Linear hashing: the bucket of `hashed` among 2**level + split buckets."""
    number = hashed & ((1 << level) - 1)
    return hashed & ((1 << (level + 1)) - 1) if number < split else number


def stats(campaign_id: str) -> str:
    """Hash: campaign counters, owner organization, revision and freshness fields."""
    return f"{_tag(campaign_id)}:{STATS_PART}"


# How long after its end a bucket of each resolution is kept: `contract`'s, for the scripts.
MINUTE_RETENTION_MS: Final = contract.MINUTE_RETENTION_MS
QUARTER_RETENTION_MS: Final = contract.QUARTER_RETENTION_MS
SERIES_INDEX_PART: Final = "ts"
#: Batch progress: contacts of a batch whose latest version is terminal, by the minute of
#: that version's occurred_at (`tp:<hour>` hashes, field `<batch number>:<minute of the
#: hour>`); a hash expires two hours after its hour ends (only the last 15 minutes are read).
PROGRESS_PART: Final = "tp:"
PROGRESS_RETENTION_MS: Final = 2 * 3_600_000


def minute_series(campaign_id: str, hour: int) -> str:
    """Hash: minute of the hour -> `completed|failed|busy|no_answer|follow_up|talk ms` of the
    call records whose occurred_at is in that minute (`hour`: hours since the epoch)."""
    return f"{_tag(campaign_id)}:tm:{hour}"


def quarter_series(campaign_id: str, day: int) -> str:
    """Hash: quarter hour of the UTC day -> the same six numbers (`day`: days since the
    epoch)."""
    return f"{_tag(campaign_id)}:tq:{day}"


def series_index(campaign_id: str) -> str:
    """Sorted set of the campaign's series hashes (`m<hour>`, `q<day>`) by expiry."""
    return f"{_tag(campaign_id)}:{SERIES_INDEX_PART}"


def layout(campaign_id: str) -> str:
    """Hash: the bucket layout and the batch numbers of a campaign.

    `c:L`, `c:P`, `c:N` (contacts: level, split pointer, entities) and the same for `r:`
    (call records); `b:<batch id>` -> its number, `#<number>` -> its id, `#` the last number.
    """
    return f"{_tag(campaign_id)}:lay"


def shadow(campaign_id: str) -> str:
    """Hash: the counters a running chunked recount has counted so far (expires)."""
    return f"{_tag(campaign_id)}:rc"


def fence(campaign_id: str) -> str:
    """Hash: `topic:partition` -> `epoch:offset` of the last applied message."""
    return f"{_tag(campaign_id)}:fence"


def progress(campaign_id: str, hour: int) -> str:
    """Hash: per batch number and minute of the hour, contacts that became terminal then
    (by their latest version's occurred_at; `hour` since the epoch, UTC)."""
    return f"{_tag(campaign_id)}:{PROGRESS_PART}{hour}"


def batches(campaign_id: str) -> str:
    """Hash: batch id -> the batch's state, packed (`processors.domain.batchstate`): status,
    version, total, created_at, contacts known and per-status / per-retry counts."""
    return f"{_tag(campaign_id)}:{BATCHES_PART}"


def legacy_batch(campaign_id: str, batch_id: str) -> str:
    """Hash of one batch, as batches were kept before `batches` (fields `s`, `v`, `total`,
    `created_at`, `created_us`, `known`, `contacts:<status>`, `retry:<n>`)."""
    return f"{_tag(campaign_id)}:{BATCH_PART}{batch_id}"


def batch_index(campaign_id: str, status: str | None = None) -> str:
    """Sorted set of batch ids scored by created_at in microseconds; all, or one per status."""
    suffix = f":{status}" if status else ""
    return f"{_tag(campaign_id)}:bi{suffix}"


def contact_bucket(campaign_id: str, number: int) -> str:
    """Hash bucket of contact states: digest -> `version|status code|retry|batch number`."""
    return f"{_tag(campaign_id)}:{CONTACT_BUCKET_PART}{number}"


def record_bucket(campaign_id: str, number: int) -> str:
    """Hash bucket of call-record states: digest -> `version|status code|follow-up`."""
    return f"{_tag(campaign_id)}:{RECORD_BUCKET_PART}{number}"


def legacy_bucket(campaign_id: str, kind: str, number: int) -> str:
    """A bucket of the fixed layout (`c` contacts, `r` records), keyed by plain ids."""
    part = LEGACY_CONTACT_PART if kind == "c" else LEGACY_RECORD_PART
    return f"{_tag(campaign_id)}:{part}{number}"


def reconciliation(campaign_id: str) -> str:
    """String: the last reconciliation report for the campaign (JSON)."""
    return f"{_tag(campaign_id)}:recon"


def campaign_pattern(campaign_id: str) -> str:
    """SCAN pattern matching every key of one campaign."""
    return f"{_tag(campaign_id)}:*"


def updates_channel(campaign_id: str) -> str:
    """Pub/sub channel announcing a new revision of the campaign's stats."""
    return f"{PREFIX}:updates:{{{campaign_id}}}"


#: Pattern matching every campaign's updates channel.
UPDATES_PATTERN: Final = f"{PREFIX}:updates:*"


def campaign_of_channel(channel: str) -> str:
    """The campaign id an updates channel belongs to."""
    return channel[len(f"{PREFIX}:updates:{{") : -1]


# Keys outside any campaign slot (written outside Lua).
TOKENS: Final = f"{PREFIX}:tokens"
CAMPAIGNS: Final = f"{PREFIX}:campaigns"
# hash: topic:partition -> `lag:written_at_ms`, written by workers, entries expire (Store.lag)
LAG: Final = f"{PREFIX}:lag"
# hash: topic:partition -> JSON of why the partition is stuck, written by workers (Store.stuck)
STUCK: Final = f"{PREFIX}:stuck"
# set: campaigns `dialer-stats migrate` has started to move and not yet recounted
MIGRATING: Final = f"{PREFIX}:migrating"


def org_campaigns(organization_id: str) -> str:
    """Set of campaign ids owned by an organization."""
    return f"{PREFIX}:org:{organization_id}:campaigns"


def org_changes(organization_id: str) -> str:
    """Hash: per campaign of the organization, how many times the workers (or a repair)
    announced a change to it; CHANGES_SUM the sum, CHANGES_LIFE set once per life of the
    hash. What the API's organization rollup watches (a key of its own slot: not the
    campaigns'). It was `:changes` with a `life` field before, which a campaign named
    `life` collided with; that key is read no more."""
    return f"{PREFIX}:org:{organization_id}:announced"


#: Fields of `org_changes` beside the campaigns': `#` is in no campaign id (`ID_PATTERN`).
CHANGES_SUM: Final = "#"
CHANGES_LIFE: Final = "#life"


def log_marker(topic: str, partition: int) -> str:
    """Hash: incarnation epoch of a topic partition and its first record's fingerprint."""
    return f"{PREFIX}:log:{topic}:{partition}"
