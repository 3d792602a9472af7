"""Response models: the incumbent's JSON shapes, field for field."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ContactCounts(BaseModel):
    """Contacts per status; all 11 keys always present."""

    pending: int
    dispatched: int
    in_progress: int
    retrying: int
    completed: int
    failed: int
    busy: int
    no_answer: int
    skipped: int
    followup_scheduled: int
    max_retries_reached: int


class BatchCounts(BaseModel):
    """Batches per status."""

    pending: int
    in_progress: int
    paused: int
    completed: int
    cancelled: int
    expired: int


class CallCounters(BaseModel):
    """Call records by outcome, and follow-up records."""

    completed_calls: int
    failed_calls: int
    busy_calls: int
    no_answer_calls: int
    follow_up_calls: int


class CampaignStats(BaseModel):
    """`GET /campaigns/{id}/stats`."""

    campaign_id: str
    contact_counts: ContactCounts
    batch_counts: BatchCounts
    call_counters: CallCounters
    retry_breakdown: dict[str, int] = Field(
        description="Contacts in `retrying` by retry_count: retry_1, retry_2, ...; zeros omitted."
    )
    in_flight_contacts: int
    total_call_attempts: int
    follow_up_attempts: int


class BatchCounters(BaseModel):
    """Contacts of one batch per status (`in_flight` = in_progress)."""

    pending: int
    dispatched: int
    in_flight: int
    retrying: int
    completed: int
    failed: int
    busy: int
    no_answer: int
    skipped: int
    followup_scheduled: int
    max_retries_reached: int


class Batch(BaseModel):
    """One item of `GET /campaigns/{id}/batches`."""

    batch_id: str
    campaign_id: str
    status: str
    total_contacts: int
    counters: BatchCounters
    retry_breakdown: dict[str, int]
    created_at: str | None


class CampaignList(BaseModel):
    """Campaigns of the token's organization."""

    organization_id: str
    campaigns: list[str]


class Problem(BaseModel):
    """An error."""

    detail: str
