"""What a reconciliation run found and did: per field, per campaign, per run (JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FieldDrift:
    """One counter or index entry that differed from what the entity state implies."""

    scope: str  # "stats", "batch:<id>" or "index:<batch id>"
    field: str
    expected: int | str | None
    found: int | str | None
    corrected: int | str | None = None


@dataclass
class CampaignReport:
    """What one campaign's reconciliation found and did."""

    campaign_id: str
    organization_id: str | None
    dry_run: bool
    entities_missing: int = 0
    entities_stale: int = 0
    entities_extra: int = 0
    #: newer in the source than in Redis while the worker had not applied the source's
    #: records yet: lag, not drift (repaired anyway)
    entities_in_flight: int = 0
    #: in Redis, not in the source, but possibly newer than the read: left for a later run
    extra_unconfirmed: int = 0
    extra_deferred: bool = False
    #: whether the worker had applied everything the source read for this campaign
    #: (asked only when Redis was behind the source)
    worker_caught_up: bool = True
    tenant_conflicts: int = 0
    recount_fixes: int = 0
    #: batch hashes of the millisecond score layout rewritten (or, dry, to rewrite) to
    #: microseconds (an upgrade step, not drift)
    batches_migrated: int = 0
    #: call records stored before time series (no occurred_at) rewritten with their time
    #: (or, dry, to rewrite): an upgrade step, not drift
    records_upgraded: int = 0
    fields: list[FieldDrift] = field(default_factory=list)
    fixed: int = 0
    finished_at: float = 0.0
    duration_seconds: float = 0.0

    @property
    def drift(self) -> int:
        """Number of real differences found."""
        return self.entities_missing + self.entities_stale + self.entities_extra + len(self.fields)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (as served by the API)."""
        data = asdict(self)
        data["drift"] = self.drift
        return data


@dataclass
class Report:
    """A whole reconciliation run."""

    dry_run: bool
    events_read: int = 0
    invalid_skipped: int = 0
    campaigns: list[CampaignReport] = field(default_factory=list)
    duration_seconds: float = 0.0

    def totals(self) -> dict[str, int]:
        """Totals across campaigns."""
        return {
            "campaigns": len(self.campaigns),
            "campaigns_with_drift": sum(1 for c in self.campaigns if c.drift),
            "fields": sum(len(c.fields) for c in self.campaigns),
            "entities_missing": sum(c.entities_missing for c in self.campaigns),
            "entities_stale": sum(c.entities_stale for c in self.campaigns),
            "entities_extra": sum(c.entities_extra for c in self.campaigns),
            "entities_in_flight": sum(c.entities_in_flight for c in self.campaigns),
            "extra_unconfirmed": sum(c.extra_unconfirmed for c in self.campaigns),
            "batches_migrated": sum(c.batches_migrated for c in self.campaigns),
            "records_upgraded": sum(c.records_upgraded for c in self.campaigns),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "dry_run": self.dry_run,
            "events_read": self.events_read,
            "invalid_skipped": self.invalid_skipped,
            "duration_seconds": round(self.duration_seconds, 3),
            "totals": self.totals(),
            "campaigns": [c.to_dict() for c in self.campaigns],
        }


# -- pure ------------------------------------------------------------------------------
