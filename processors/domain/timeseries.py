"""Time windows over call records by event time (pure): the points of a time series in a
time zone, the store buckets each point is made of, and the figures they add up to.

The store keeps, per campaign, call records in buckets by their own `occurred_at`: one
minute long (resolution `m`, kept at least 48 hours) and one UTC quarter hour long (`q`,
kept at least 400 days). Every time zone in use today is offset from UTC by a multiple of
15 minutes, so a local minute, quarter, hour or day is a union of whole buckets: a series
is exact, in any zone, across DST changes (a local day is then 23 or 25 hours long).

A point starts on a multiple of its interval in local wall time (1d: at local midnight)
and holds the buckets that start in [its start, the next point's start). A series holds
the buckets that start in [`from` floored to the interval, `to`): the bucket that contains
`to` counts whole, so the series' reported end is `to` rounded up to the resolution.
"""

from __future__ import annotations

import csv
import io
import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, available_timezones

from processors import DialerStatsError
from processors.domain.contract import CALL_STATUSES, EARLIEST, LATEST

IntervalName = Literal["1m", "5m", "15m", "1h", "1d"]
Resolution = Literal["m", "q"]


class TimeWindowError(DialerStatsError, ValueError):
    """A time series or window that cannot be answered; the message says why (HTTP 422),
    `param` names the query parameter at fault."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Interval:
    """A point's length: nominal minutes, and the store resolution it is made of."""

    name: IntervalName
    minutes: int
    resolution: Resolution


INTERVALS: Final[dict[str, Interval]] = {
    "1m": Interval("1m", 1, "m"),
    "5m": Interval("5m", 5, "m"),
    "15m": Interval("15m", 15, "q"),
    "1h": Interval("1h", 60, "q"),
    "1d": Interval("1d", 1440, "q"),
}
#: Bucket length of each resolution, in ms.
STEP_MS: Final[dict[str, int]] = {"m": 60_000, "q": 900_000}
#: How far back each resolution is promised (the store keeps an hour or a day more).
RETENTION_MS: Final[dict[str, int]] = {"m": 48 * 3_600_000, "q": 400 * 86_400_000}
RETENTION_TEXT: Final[dict[str, str]] = {
    "m": "1-minute buckets (intervals 1m, 5m) are kept 48 hours",
    "q": "quarter-hour buckets (intervals 15m, 1h, 1d) are kept 400 days",
}
MAX_POINTS: Final = 1500
DEFAULT_SPAN: Final = timedelta(hours=24)
MAX_WINDOW_MINUTES: Final = 24 * 60

#: A bucket's six numbers, as `Store.series` returns them.
Bucket = Sequence[int]


@dataclass(frozen=True)
class Series:
    """A planned series: its points in UTC ms and the store read that fills them."""

    interval: Interval
    zone: ZoneInfo
    #: point starts, ascending; point i covers [starts[i], starts[i + 1]) and the last one
    #: [starts[-1], end_ms)
    starts: tuple[int, ...]
    end_ms: int
    #: buckets starting in [starts[0], until_ms) are read: `to` rounded up to the resolution
    until_ms: int

    def bounds(self) -> list[tuple[int, int]]:
        """Each point's [start, next start) in ms since the epoch."""
        ends = (*self.starts[1:], self.end_ms)
        return list(zip(self.starts, ends, strict=True))


@cache
def _zone_names() -> frozenset[str]:
    # `localtime` and `posixrules` are this machine's own links, not IANA names
    return frozenset(available_timezones()) - {"localtime", "posixrules"}


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; TimeWindowError for anything else."""
    if len(name) > 64 or name not in _zone_names():
        raise TimeWindowError(
            f"unknown time zone {name[:64]!r}: use an IANA name like Europe/Paris", "tz"
        )
    return ZoneInfo(name)


def instant(text: str, where: ZoneInfo, name: str) -> datetime:
    """An ISO 8601 time (a date, or a time without offset, is read in `where`)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise TimeWindowError(
            f"{name} is not an ISO 8601 time: {text[:64]!r} (e.g. 2026-03-29T00:00:00+01:00)",
            name,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=where)
    if not EARLIEST <= moment < LATEST:
        raise TimeWindowError(f"{name} must lie between 1970 and 2200", name)
    return moment


def iso(ms: int, where: ZoneInfo) -> str:
    """An instant as ISO 8601 in the zone, with its offset."""
    return datetime.fromtimestamp(ms / 1000, where).isoformat(timespec="seconds")


def _ms(moment: datetime) -> int:
    return (moment - EARLIEST) // timedelta(milliseconds=1)


def plan(interval: str, start: str | None, end: str | None, tz: str | None, now_ms: int) -> Series:
    """The series for the query (defaults: to = now, from = 24 h before to, tz = UTC)."""
    step = INTERVALS.get(interval)
    if step is None:
        raise TimeWindowError(
            f"interval must be one of {', '.join(INTERVALS)}, not {interval[:16]!r}", "interval"
        )
    where = zone(tz or "UTC")
    upto = instant(end, where, "to") if end else datetime.fromtimestamp(now_ms / 1000, UTC)
    since = instant(start, where, "from") if start else upto - DEFAULT_SPAN
    if since >= upto:
        raise TimeWindowError("from must be before to", "from")
    nominal = (upto - since) / timedelta(minutes=step.minutes)
    if nominal > MAX_POINTS + 1:  # a generous bound before the exact count below
        raise _too_many(int(nominal), step)
    first, until = _ms(since), _ms(upto)
    if step.name == "1d":
        starts, end_ms = _days(first, until, where)
    else:
        starts, end_ms = _ticks(first, until, step, where)
    if len(starts) > MAX_POINTS:
        raise _too_many(len(starts), step)
    resolution = step.resolution
    # `from` as given: the store keeps an hour (minutes) or a day (quarter hours) beyond the
    # retention promised, which covers rounding it down to a sub-day interval; a day is
    # checked from its first instant, since its first buckets may be gone already
    checked = starts[0] if step.name == "1d" else first
    if checked < now_ms - RETENTION_MS[resolution]:
        oldest = iso(now_ms - RETENTION_MS[resolution], where)
        raise TimeWindowError(
            f"from is too old: {RETENTION_TEXT[resolution]} (from must be after {oldest})",
            "from",
        )
    grain = STEP_MS[resolution]
    if any(s % grain for s in (*starts, end_ms)):  # a day starting off the quarter hours
        raise TimeWindowError(
            f"time zone {where.key} was not offset from UTC by whole quarter hours then:"
            " its days are not made of buckets",
            "tz",
        )
    until_ms = -(-until // grain) * grain
    return Series(step, where, tuple(starts), end_ms, until_ms)


def _too_many(points: int, step: Interval) -> TimeWindowError:
    return TimeWindowError(
        f"{points} points of {step.name} exceed the limit of {MAX_POINTS}:"
        " shorten the range or use a longer interval",
        "from",
    )


def _is_start(ms: int, step: Interval, where: ZoneInfo) -> bool:
    local = datetime.fromtimestamp(ms / 1000, where)
    offset = local.utcoffset() or timedelta()
    if offset % timedelta(milliseconds=STEP_MS[step.resolution]):
        raise TimeWindowError(
            f"time zone {where.key} was offset from UTC by {offset} then, not by whole"
            f" {STEP_MS[step.resolution] // 60_000} minutes: its intervals are not made of buckets",
            "tz",
        )
    if local.second == 0 and (local.hour * 60 + local.minute) % step.minutes == 0:
        return True
    # a local start skipped by a DST change (Lord Howe moves by 30 minutes): the period
    # begins at its first instant, like a day whose midnight is skipped
    before = datetime.fromtimestamp((ms - STEP_MS[step.resolution]) / 1000, where)
    return _period(before, step) != _period(local, step)


def _period(local: datetime, step: Interval) -> tuple[date, int]:
    """Which interval of which local day a wall time falls in."""
    return local.date(), (local.hour * 60 + local.minute) // step.minutes


def _ticks(first: int, until: int, step: Interval, where: ZoneInfo) -> tuple[list[int], int]:
    """Sub-day point starts: bucket starts whose local wall time is a multiple of the
    interval, from the last one at or before `first` to the first one at or after `until`."""
    grain = STEP_MS[step.resolution]
    at = first - first % grain
    # A DST change moves local time by two hours at most (Antarctica/Troll): going back an
    # interval and two hours always reaches a point start.
    for _ in range((step.minutes + 120) * 60_000 // grain + 1):
        if _is_start(at, step, where):
            break
        at -= grain
    else:  # pragma: no cover - no zone shifts its clocks by more than two hours
        raise TimeWindowError(f"no {step.name} point starts near from in {where.key}", "tz")
    starts = [at]
    while True:
        at += grain
        if _is_start(at, step, where):
            if at >= until:
                return starts, at
            starts.append(at)


def _days(first: int, until: int, where: ZoneInfo) -> tuple[list[int], int]:
    """Local midnights (a day's first instant when midnight is skipped by a DST change),
    from the day of `first` to the first one at or after `until`."""
    day = datetime.fromtimestamp(first / 1000, where).date()
    starts: list[int] = []
    while True:
        # fold=0 maps a skipped midnight to the instant the day begins after the change
        midnight = _ms(datetime(day.year, day.month, day.day, tzinfo=where))
        if midnight >= until and starts:
            return starts, midnight
        starts.append(midnight)
        day += timedelta(days=1)


_ZERO: Final = (0, 0, 0, 0, 0, 0)


def aggregate(series: Series, buckets: Mapping[int, Bucket]) -> list[Sequence[int]]:
    """The six sums of each point from the buckets that start in [from, until)."""
    sums: list[Sequence[int]] = [_ZERO] * len(series.starts)
    starts, first, until = series.starts, series.starts[0], series.until_ms
    for start, numbers in buckets.items():
        if first <= start < until:
            at = bisect_right(starts, start) - 1
            point = sums[at]
            # most points are one bucket (1m, 15m): add only when a point has several
            sums[at] = (
                numbers if point is _ZERO else [a + b for a, b in zip(point, numbers, strict=True)]
            )
    return sums


def figures(sums: Sequence[int]) -> dict[str, Any]:
    """calls by outcome, attempts, connect rate and talk time of six sums."""
    completed, failed, busy, no_answer, follow_up, talk_ms = sums
    attempts = completed + failed + busy + no_answer
    talk_seconds = talk_ms / 1000
    return {
        "calls": dict(zip(CALL_STATUSES, sums[:4], strict=True)),
        "follow_up_calls": follow_up,
        "attempts": attempts,
        "connect_rate": completed / attempts if attempts else None,
        "talk_seconds": talk_seconds,
        "avg_talk_seconds": talk_seconds / completed if completed else None,
    }


def series_view(campaign_id: str, series: Series, buckets: Mapping[int, Bucket]) -> dict[str, Any]:
    """The `GET /campaigns/{id}/timeseries` body."""
    points = [
        {"start": iso(start, series.zone), **figures(sums)}
        for start, sums in zip(series.starts, aggregate(series, buckets), strict=True)
    ]
    return {
        "campaign_id": campaign_id,
        "interval": series.interval.name,
        "tz": series.zone.key,
        "from": iso(series.starts[0], series.zone),
        "to": iso(series.until_ms, series.zone),
        "points": points,
    }


#: The columns of a series as CSV: the point's start, then its figures flattened.
CSV_COLUMNS: Final = (
    "start", "completed", "failed", "busy", "no_answer", "follow_up_calls", "attempts",
    "connect_rate", "talk_seconds", "avg_talk_seconds",
)  # fmt: skip


def series_csv(view: Mapping[str, Any]) -> str:
    """The points of a `series_view` as CSV (RFC 4180): a header row, then one row per
    point; a figure that is null in the JSON is an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for point in view["points"]:
        calls = point["calls"]
        row = [
            point["start"], calls["completed"], calls["failed"], calls["busy"],
            calls["no_answer"], point["follow_up_calls"], point["attempts"],
            point["connect_rate"], point["talk_seconds"], point["avg_talk_seconds"],
        ]  # fmt: skip
        writer.writerow("" if value is None else value for value in row)
    return out.getvalue()


_WINDOW = re.compile(r"([1-9][0-9]{0,3})([mh])")
#: Exactly the windows `window_minutes` accepts (1m ... 1440m, 1h ... 24h), for schemas.
WINDOW_PATTERN: Final = (
    r"^(?:(?:[1-9][0-9]{0,2}|1[0-3][0-9]{2}|14[0-3][0-9]|1440)m|(?:[1-9]|1[0-9]|2[0-4])h)$"
)


def window_minutes(text: str) -> int:
    """`15m`, `2h`, `24h` ... as minutes, from 1 minute to 24 hours."""
    match = _WINDOW.fullmatch(text)
    minutes = 0
    if match:
        minutes = int(match[1]) * (60 if match[2] == "h" else 1)
    if not 1 <= minutes <= MAX_WINDOW_MINUTES:
        raise TimeWindowError(
            f"window must be minutes or hours from 1m to 24h (like 15m or 2h), not {text[:32]!r}",
            "window",
        )
    return minutes


def window_range(minutes: int, now_ms: int) -> tuple[int, int]:
    """The minute buckets of a window, [start, end) in ms: the current minute and the
    `minutes - 1` before it (minute granularity: the oldest minute counts whole)."""
    current = now_ms - now_ms % 60_000
    return current - (minutes - 1) * 60_000, current + 60_000


def window_view(minutes: int, now_ms: int, buckets: Mapping[int, Bucket]) -> dict[str, Any]:
    """The `window` object of `GET /campaigns/{id}/stats?window=`."""
    start, end = window_range(minutes, now_ms)
    sums = [0] * 6
    for at, numbers in buckets.items():
        if start <= at < end:
            for slot in range(6):
                sums[slot] += numbers[slot]
    total = figures(sums)
    return {
        "minutes": minutes,
        "calls": total["calls"],
        "attempts": total["attempts"],
        "connect_rate": total["connect_rate"],
        "dials_per_minute": total["attempts"] / minutes,
        "avg_talk_seconds": total["avg_talk_seconds"],
    }
