"""Instants as the store and the model count them (pure): milliseconds and microseconds
since the epoch, talk time in milliseconds, ISO-8601 in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch (a naive time is taken as UTC)."""
    return int(_aware(moment).timestamp() * 1000)


def epoch_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (a naive time is taken as UTC).

    The batch index score: integer arithmetic, not `timestamp()`, whose float loses the last
    microseconds; below 2**53 (years 1685 to 2255), so Redis's double score holds it exactly.
    The event contract accepts 1970 to 2200 only (`contract.in_time_range`).
    """
    return (_aware(moment) - _EPOCH) // _MICROSECOND


def from_epoch_us(us: int) -> datetime:
    """The instant `us` microseconds after the Unix epoch (UTC), exactly: `epoch_us`'s inverse."""
    return _EPOCH + us * _MICROSECOND


def talk_ms(duration_seconds: float | None) -> int:
    """A call's duration in whole milliseconds (what time series sum exactly); 0 if unknown."""
    return 0 if duration_seconds is None else round(duration_seconds * 1000)


def iso(moment: datetime) -> str:
    """ISO-8601 in UTC with a `Z` (a naive time is taken as UTC)."""
    return _aware(moment).astimezone(UTC).isoformat().replace("+00:00", "Z")
