"""Every Redis key name dialer-stats uses, in one place.

All keys of one campaign share the hash tag `{campaign_id}` so that each Lua call touches a
single Redis Cluster slot. Event ids are restricted to `[A-Za-z0-9_.-]` (see `events`), so
they can never break a tag or collide across key kinds.
"""

from __future__ import annotations

import zlib
from typing import Final

PREFIX: Final = "ds"
# Entity state lives in hashes of about 64 fields at 1M entities per campaign, small enough
# for Redis's compact listpack encoding (hash-max-listpack-entries defaults to 128).
STATE_BUCKETS: Final = 16384  # a power of two


def _tag(campaign_id: str) -> str:
    return f"{PREFIX}:{{{campaign_id}}}"


def bucket(entity_id: str) -> int:
    """The state bucket an entity's packed state lives in."""
    return zlib.crc32(entity_id.encode()) & (STATE_BUCKETS - 1)


def stats(campaign_id: str) -> str:
    """Hash: campaign counters, owner organization, revision and freshness fields."""
    return f"{_tag(campaign_id)}:stats"


def fence(campaign_id: str) -> str:
    """Hash: `topic:partition` -> `epoch:offset` of the last applied message."""
    return f"{_tag(campaign_id)}:fence"


def batch(campaign_id: str, batch_id: str) -> str:
    """Hash: batch metadata, version and per-batch contact counters."""
    return f"{_tag(campaign_id)}:b:{batch_id}"


def batch_index(campaign_id: str, status: str | None = None) -> str:
    """Sorted set of batch ids scored by created_at in microseconds; all, or one per status."""
    suffix = f":{status}" if status else ""
    return f"{_tag(campaign_id)}:bi{suffix}"


def contact_bucket(campaign_id: str, number: int) -> str:
    """Hash bucket of contact states: contact_id -> `version|status code|retry|batch_id`."""
    return f"{_tag(campaign_id)}:c:{number}"


def record_bucket(campaign_id: str, number: int) -> str:
    """Hash bucket of call-record states: execution_id -> `version|status code|follow-up`."""
    return f"{_tag(campaign_id)}:r:{number}"


def contact_state(campaign_id: str, contact_id: str) -> str:
    """The bucket holding one contact's state."""
    return contact_bucket(campaign_id, bucket(contact_id))


def record_state(campaign_id: str, execution_id: str) -> str:
    """The bucket holding one call record's state."""
    return record_bucket(campaign_id, bucket(execution_id))


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


def org_campaigns(organization_id: str) -> str:
    """Set of campaign ids owned by an organization."""
    return f"{PREFIX}:org:{organization_id}:campaigns"


def log_marker(topic: str, partition: int) -> str:
    """Hash: incarnation epoch of a topic partition and its first record's fingerprint."""
    return f"{PREFIX}:log:{topic}:{partition}"
