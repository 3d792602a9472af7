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


class CallsByOutcome(BaseModel):
    """Call records by `call_status`."""

    completed: int
    failed: int
    busy: int
    no_answer: int


class StatsWindow(BaseModel):
    """Call records whose `occurred_at` lies in the current minute and the N - 1 before."""

    minutes: int
    calls: CallsByOutcome
    attempts: int
    connect_rate: float | None = Field(description="completed / attempts; null without attempts.")
    dials_per_minute: float = Field(description="attempts / minutes.")
    avg_talk_seconds: float | None = Field(
        description="Talk time / completed calls; null without completed calls."
    )


class _Counts(BaseModel):
    """The counters of the stats body (a campaign's, or an organization's summed)."""

    contact_counts: ContactCounts
    batch_counts: BatchCounts
    call_counters: CallCounters
    retry_breakdown: dict[str, int] = Field(
        description="Contacts in `retrying` by retry_count: retry_1, retry_2, ...; zeros omitted."
    )
    in_flight_contacts: int
    total_call_attempts: int
    follow_up_attempts: int


class _CampaignHead(BaseModel):
    campaign_id: str


# The bases' fields come last base first: the schemas list the keys in the bodies' order.
class CampaignStats(_Counts, _CampaignHead):
    """`GET /campaigns/{id}/stats`: `campaign_id`, then the counters."""

    window: StatsWindow | None = Field(
        default=None,
        description="Only with `?window=`, and then always: the call records of the last N"
        " minutes by their occurred_at. Without it the stats have exactly the keys above.",
    )


class _OrgHead(BaseModel):
    organization_id: str
    campaigns: int = Field(description="How many campaigns the organization has.")


class OrgStats(_Counts, _OrgHead):
    """`GET /api/v1/stats`: every campaign of the token's organization, summed
    (`organization_id` and `campaigns`, then the counters)."""

    window: StatsWindow | None = Field(
        default=None,
        description="Only with `?window=`: the call records of the last N minutes by their"
        " occurred_at, over every campaign.",
    )


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


class BatchProgress(BaseModel):
    """`GET /campaigns/{id}/batches/{batch_id}/progress`: how far a batch is, and when it
    will be done at the rate of the last 15 minutes."""

    batch_id: str
    total_contacts: int = Field(description="As in the batches list.")
    done: int = Field(
        description="Contacts in a terminal status: completed, failed, busy, no_answer,"
        " skipped, max_retries_reached."
    )
    rate_per_minute: float = Field(
        description="Contacts whose latest version became terminal in the last 15 minutes"
        " (by occurred_at: the current minute and the 14 before it), per minute."
    )
    eta: str | None = Field(
        description="now + (total_contacts - done) / rate_per_minute, an ISO 8601 instant"
        " in UTC; null when the rate is 0 or the batch is done."
    )


class CampaignList(BaseModel):
    """Campaigns of the token's organization."""

    organization_id: str
    campaigns: list[str]


class Problem(BaseModel):
    """An error."""

    detail: str


class TimeseriesPoint(BaseModel):
    """The call records whose `occurred_at` lies in [start, the next point's start)."""

    start: str = Field(description="The point's start, ISO 8601 in the requested time zone.")
    calls: CallsByOutcome
    follow_up_calls: int = Field(description="Call records with `is_follow_up`.")
    attempts: int = Field(description="Call records in the point (the four outcomes).")
    connect_rate: float | None = Field(description="completed / attempts; null without attempts.")
    talk_seconds: float = Field(description="Sum of the records' `duration_seconds`.")
    avg_talk_seconds: float | None = Field(
        description="talk_seconds / completed; null without completed calls."
    )


class Timeseries(BaseModel):
    """`GET /campaigns/{id}/timeseries`: call records by event time, every point present."""

    campaign_id: str
    interval: str
    tz: str = Field(description="The IANA time zone of the points' starts.")
    from_: str = Field(
        alias="from", description="The first point's start: `from` floored to the interval."
    )
    to: str = Field(
        description="End of the data: `to` rounded up to the bucket (1 minute for 1m and 5m,"
        " 15 minutes for 15m, 1h and 1d)."
    )
    points: list[TimeseriesPoint]
