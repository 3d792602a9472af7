"""An organization's rollup (pure): the counters of all its campaigns summed, kept up to
date one campaign at a time, and the `GET /api/v1/stats` body made from them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from processors.domain.views import stats_view

#: The stats hash's counter fields (`contacts:<status>`, `batches:<status>`,
#: `calls:<status>`, `calls:follow_up`, `retry:<n>`); the rest is metadata.
COUNTER_PREFIXES = ("contacts:", "batches:", "calls:", "retry:")


def counters_of(fields: Mapping[str, str]) -> Counter[str]:
    """The counters of one campaign's stats hash."""
    return Counter(
        {name: int(value) for name, value in fields.items() if name.startswith(COUNTER_PREFIXES)}
    )


class Rollup:
    """The counters of some campaigns and their sum; a campaign's counters replace what it
    added before."""

    def __init__(self) -> None:
        self.sums: Counter[str] = Counter()
        self.per_campaign: dict[str, Counter[str]] = {}

    def put(self, campaign_id: str, counters: Counter[str]) -> None:
        old = self.per_campaign.get(campaign_id)
        if old is not None:
            self.sums.subtract(old)
        self.sums.update(counters)
        self.per_campaign[campaign_id] = counters

    def keep_only(self, campaign_ids: set[str]) -> None:
        """Forget campaigns no longer among the organization's."""
        for campaign_id in [c for c in self.per_campaign if c not in campaign_ids]:
            self.sums.subtract(self.per_campaign.pop(campaign_id))


def org_stats_view(organization_id: str, campaigns: int, sums: Mapping[str, int]) -> dict[str, Any]:
    """The `GET /api/v1/stats` body: the organization, how many campaigns it has, then
    every field of the campaign stats body over their summed counters."""
    body = stats_view("", {name: str(value) for name, value in sums.items() if value})
    del body["campaign_id"]
    return {"organization_id": organization_id, "campaigns": campaigns, **body}


def bucket_sums(buckets: Mapping[int, Sequence[int]]) -> list[int]:
    """The six numbers of some time-series buckets added up."""
    out = [0] * 6
    for numbers in buckets.values():
        for i, n in enumerate(numbers):
            out[i] += n
    return out
