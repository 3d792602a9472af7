"""Time windows (pure): points aligned in the requested zone across DST changes, windows
made of whole store buckets with their edges where documented, limits as errors, and
aggregation that neither loses nor invents a call."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.domain.timeseries import (
    INTERVALS,
    MAX_POINTS,
    TimeWindowError,
    aggregate,
    figures,
    plan,
    series_view,
    window_minutes,
    window_range,
    window_view,
)

MINUTE, QUARTER, HOUR = 60_000, 900_000, 3_600_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def utc(at: int) -> str:
    return datetime.fromtimestamp(at / 1000, UTC).isoformat()


def now_after(text: str) -> int:
    """A clock a day after `text`: inside every retention."""
    return ms(text) + 86_400_000


def hours(bounds: list[tuple[int, int]]) -> list[float]:
    return [(end - start) / HOUR for start, end in bounds]


@pytest.mark.parametrize(
    ("tz", "first", "last", "lengths"),
    [
        ("Europe/Paris", "2026-03-28", "2026-03-31", [24, 23, 24]),
        ("Europe/Paris", "2026-10-24", "2026-10-27", [24, 25, 24]),
        ("America/New_York", "2026-03-07", "2026-03-10", [24, 23, 24]),
        ("America/New_York", "2026-10-31", "2026-11-03", [24, 25, 24]),
    ],
)
def test_a_day_across_a_dst_change_is_23_or_25_hours(
    tz: str, first: str, last: str, lengths: list[int]
) -> None:
    """1d points start at local midnight; the day of the change is an hour short or long."""
    series = plan("1d", first, last, tz, now_after(last))
    assert hours(series.bounds()) == lengths
    where = ZoneInfo(tz)
    for start in series.starts:
        local = datetime.fromtimestamp(start / 1000, where)
        assert (local.hour, local.minute, local.second) == (0, 0, 0)
    view = series_view("c", series, {})
    day = datetime.fromisoformat(first).date()
    assert [p["start"][:10] for p in view["points"]] == [
        str(day + timedelta(days=n)) for n in range(3)
    ]


def test_a_dst_day_holds_exactly_its_quarter_buckets() -> None:
    """One call in every quarter hour of three Paris days: 96, 100 and 96 attempts."""
    series = plan("1d", "2026-10-24", "2026-10-27", "Europe/Paris", now_after("2026-10-27"))
    start, end = series.starts[0], series.end_ms
    buckets = {at: (1, 0, 0, 0, 0, 0) for at in range(start - HOUR, end + HOUR, QUARTER)}
    assert [p["attempts"] for p in series_view("c", series, buckets)["points"]] == [96, 100, 96]


def test_hours_across_the_spring_change_skip_the_missing_hour() -> None:
    """Paris, 29 March 2026: 02:00 does not exist; the points are the real hour starts."""
    series = plan(
        "1h", "2026-03-29T00:00", "2026-03-29T05:00", "Europe/Paris", now_after("2026-03-29")
    )
    assert [utc(s) for s in series.starts] == [
        "2026-03-28T23:00:00+00:00",
        "2026-03-29T00:00:00+00:00",
        "2026-03-29T01:00:00+00:00",
        "2026-03-29T02:00:00+00:00",
    ]
    assert [p["start"] for p in series_view("c", series, {})["points"]] == [
        "2026-03-29T00:00:00+01:00",
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T04:00:00+02:00",
    ]
    assert hours(series.bounds()) == [1, 1, 1, 1]


def test_hours_across_the_autumn_change_repeat_the_local_hour() -> None:
    """New York, 1 November 2026: 01:00 happens twice, as two points an hour apart."""
    series = plan(
        "1h",
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T04:00:00-05:00",
        "America/New_York",
        now_after("2026-11-01"),
    )
    assert [p["start"] for p in series_view("c", series, {})["points"]] == [
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
        "2026-11-01T03:00:00-05:00",
    ]
    assert [utc(s)[11:16] for s in series.starts] == ["04:00", "05:00", "06:00", "07:00", "08:00"]
    assert hours(series.bounds()) == [1] * 5


def test_a_kolkata_day_is_made_of_quarter_buckets() -> None:
    """+05:30: the local day starts at 18:30 UTC, and its hours on the half hour."""
    series = plan("1d", "2026-11-28", "2026-11-29", "Asia/Kolkata", now_after("2026-11-29"))
    assert [utc(s) for s in series.starts] == ["2026-11-27T18:30:00+00:00"]
    assert series.end_ms == ms("2026-11-28T18:30:00+00:00")
    buckets = {
        ms("2026-11-27T18:15:00+00:00"): (1, 0, 0, 0, 0, 0),  # the day before
        ms("2026-11-27T18:30:00+00:00"): (0, 1, 0, 0, 0, 0),  # its first quarter
        ms("2026-11-28T18:15:00+00:00"): (0, 0, 1, 0, 1, 4000),  # its last quarter
        ms("2026-11-28T18:30:00+00:00"): (0, 0, 0, 1, 0, 0),  # the day after
    }
    (point,) = series_view("c", series, buckets)["points"]
    assert point["start"] == "2026-11-28T00:00:00+05:30"
    assert point["calls"] == {"completed": 0, "failed": 1, "busy": 1, "no_answer": 0}
    assert (point["follow_up_calls"], point["talk_seconds"]) == (1, 4.0)
    hourly = plan(
        "1h", "2026-11-28T10:20", "2026-11-28T12:00", "Asia/Kolkata", now_after("2026-11-29")
    )
    assert [utc(s)[11:16] for s in hourly.starts] == ["04:30", "05:30"]


def test_a_bucket_at_from_is_in_and_one_at_to_is_out() -> None:
    """[from, to): the bucket starting at `from` counts, the one starting at `to` does not."""
    start = ms("2026-11-29T10:00:00+00:00")
    series = plan("1m", utc(start), utc(start + 10 * MINUTE), "UTC", start)
    assert len(series.starts) == 10
    buckets = {at: (1, 0, 0, 0, 0, 0) for at in range(start - MINUTE, start + 12 * MINUTE, MINUTE)}
    points = series_view("c", series, buckets)["points"]
    assert [p["attempts"] for p in points] == [1] * 10
    assert points[0]["start"] == "2026-11-29T10:00:00+00:00"
    assert points[-1]["start"] == "2026-11-29T10:09:00+00:00"


def test_from_is_floored_and_the_bucket_holding_to_counts_whole() -> None:
    """5m from 10:03:20 starts at 10:00; to 10:12:30 reads the 10:12 minute, so the series
    ends at 10:13; a 1h series with the same `to` ends at the next quarter hour."""
    now = ms("2026-11-29T12:00:00+00:00")
    series = plan("5m", "2026-11-29T10:03:20Z", "2026-11-29T10:12:30Z", "UTC", now)
    view = series_view("c", series, {ms("2026-11-29T10:12:00Z"): (0, 0, 0, 1, 0, 0)})
    assert (view["from"], view["to"]) == ("2026-11-29T10:00:00+00:00", "2026-11-29T10:13:00+00:00")
    assert [p["start"][11:16] for p in view["points"]] == ["10:00", "10:05", "10:10"]
    assert [p["attempts"] for p in view["points"]] == [0, 0, 1]
    hourly = series_view(
        "c", plan("1h", "2026-11-29T10:03:20Z", "2026-11-29T10:12:30Z", "UTC", now), {}
    )
    assert (hourly["from"], hourly["to"]) == (
        "2026-11-29T10:00:00+00:00",
        "2026-11-29T10:15:00+00:00",
    )


def test_local_multiples_and_times_read_in_the_zone() -> None:
    """15m points fall on local quarter hours (Kathmandu is +05:45); a time without offset
    and a bare date are read in `tz`."""
    now = now_after("2026-11-29")
    series = plan("15m", "2026-11-29T10:07", "2026-11-29T10:40", "Asia/Kathmandu", now)
    assert [p["start"] for p in series_view("c", series, {})["points"]] == [
        "2026-11-29T10:00:00+05:45",
        "2026-11-29T10:15:00+05:45",
        "2026-11-29T10:30:00+05:45",
    ]
    day = plan("1h", "2026-11-29", "2026-11-29T03:00", "Europe/Paris", now)
    assert utc(day.starts[0]) == "2026-11-28T23:00:00+00:00"


def test_defaults_are_the_last_24_hours_in_utc() -> None:
    """No from, to or tz: to = now, from = 24 h before, UTC."""
    now = ms("2026-11-29T17:31:07.250+00:00")
    view = series_view("c", plan("1h", None, None, None, now), {})
    assert view["tz"] == "UTC"
    assert view["from"] == "2026-11-28T17:00:00+00:00"
    assert view["to"] == "2026-11-29T17:45:00+00:00"
    assert len(view["points"]) == 25
    minutes = plan("1m", None, None, "", now)
    assert len(minutes.starts) == 1441 and minutes.until_ms == ms("2026-11-29T17:32:00+00:00")


@pytest.mark.parametrize(
    ("interval", "start", "end", "tz", "param", "message"),
    [
        ("2m", None, None, None, "interval", "interval must be one of 1m, 5m, 15m, 1h, 1d"),
        ("1h", None, None, "Mars/Olympus", "tz", "unknown time zone"),
        ("1h", None, None, "utc", "tz", "unknown time zone"),
        ("1h", None, None, "localtime", "tz", "unknown time zone"),
        ("1h", None, None, "../../etc/passwd", "tz", "unknown time zone"),
        ("1h", "2026-11-29T10:00Z", "2026-11-29T10:00Z", None, "from", "from must be before to"),
        ("1h", "2026-11-29T11:00Z", "2026-11-29T10:00Z", None, "from", "from must be before to"),
        ("1m", "2026-11-28T10:00Z", "2026-11-29T11:01Z", None, "from", "1501 points of 1m exceed"),
        ("1m", "2026-11-27T10:00Z", "2026-11-29T10:00Z", None, "from", "points of 1m exceed"),
        ("5m", "2026-11-27T11:59Z", "2026-11-27T12:30Z", None, "from", "kept 48 hours"),
        ("1d", "2025-10-20", "2025-10-30", None, "from", "kept 400 days"),
        ("1h", "yesterday", None, None, "from", "from is not an ISO 8601 time"),
        ("1h", None, "2026-13-01", None, "to", "to is not an ISO 8601 time"),
        ("1h", "1969-12-31T00:00Z", None, None, "from", "between 1970 and 2200"),
    ],
)
def test_limits_are_errors_that_say_why(
    interval: str, start: str | None, end: str | None, tz: str | None, param: str, message: str
) -> None:
    """Unknown interval or zone, from >= to, > 1,500 points, beyond retention, bad times:
    an error naming the parameter at fault."""
    with pytest.raises(TimeWindowError, match=message) as raised:
        plan(interval, start, end, tz, ms("2026-11-29T12:00:00+00:00"))
    assert raised.value.param == param


def test_exactly_1500_points_are_allowed() -> None:
    """25 hours of minutes; so is the dashboard's day view at 1m on a 25-hour day."""
    series = plan("1m", "2026-11-28T12:00Z", "2026-11-29T13:00Z", None, ms("2026-11-29T13:00Z"))
    assert len(series.starts) == MAX_POINTS
    day = plan("1m", "2026-10-25", "2026-10-26", "Europe/Paris", ms("2026-10-26T00:00Z"))
    assert len(day.starts) == MAX_POINTS


def test_figures_divide_only_by_what_is_there() -> None:
    """connect_rate = completed / attempts, avg talk = talk / completed, null on zero."""
    assert figures([3, 1, 0, 0, 2, 61_500]) == {
        "calls": {"completed": 3, "failed": 1, "busy": 0, "no_answer": 0},
        "follow_up_calls": 2,
        "attempts": 4,
        "connect_rate": 0.75,
        "talk_seconds": 61.5,
        "avg_talk_seconds": 20.5,
    }
    empty = figures([0] * 6)
    assert (empty["connect_rate"], empty["avg_talk_seconds"]) == (None, None)
    assert figures([0, 2, 0, 0, 0, 0])["connect_rate"] == 0.0


@pytest.mark.parametrize(
    ("text", "minutes"), [("1m", 1), ("15m", 15), ("90m", 90), ("2h", 120), ("24h", 1440)]
)
def test_window_lengths(text: str, minutes: int) -> None:
    assert window_minutes(text) == minutes


@pytest.mark.parametrize(
    "text", ["0m", "25h", "1441m", "15", "m", "1d", "15M", " 15m", "-1m", "01m"]
)
def test_window_lengths_out_of_range_are_errors(text: str) -> None:
    with pytest.raises(TimeWindowError, match="window must be") as raised:
        window_minutes(text)
    assert raised.value.param == "window"


def test_a_window_is_the_current_minute_and_the_ones_before() -> None:
    """15m at 10:14:30 holds the buckets 10:00 ... 10:14; 09:59 and 10:15 are out."""
    now = ms("2026-11-29T10:14:30Z")
    assert window_range(15, now) == (ms("2026-11-29T10:00Z"), ms("2026-11-29T10:15Z"))
    buckets = {
        ms("2026-11-29T09:59Z"): (5, 0, 0, 0, 0, 0),
        ms("2026-11-29T10:00Z"): (1, 1, 0, 0, 0, 30_000),
        ms("2026-11-29T10:14Z"): (0, 0, 1, 0, 0, 0),
        ms("2026-11-29T10:15Z"): (7, 0, 0, 0, 0, 0),
    }
    assert window_view(15, now, buckets) == {
        "minutes": 15,
        "calls": {"completed": 1, "failed": 1, "busy": 1, "no_answer": 0},
        "attempts": 3,
        "connect_rate": 1 / 3,
        "dials_per_minute": 3 / 15,
        "avg_talk_seconds": 30.0,
    }
    assert window_view(1, now, {})["connect_rate"] is None


ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu",
         "Australia/Lord_Howe", "Pacific/Chatham", "America/St_Johns"]  # fmt: skip
#: Around the 2026 spring and autumn changes of both hemispheres.
ANCHORS = [
    ms(f"2026-{day}T00:00Z") for day in ("03-08", "03-29", "04-05", "10-04", "10-25", "11-01")
]


@settings(max_examples=300, deadline=None)
@given(
    interval=st.sampled_from(list(INTERVALS)),
    tz=st.sampled_from(ZONES),
    anchor=st.sampled_from(ANCHORS),
    offset=st.integers(-3 * 86_400_000, 3 * 86_400_000),
    data=st.data(),
)
def test_aggregating_minute_buckets_preserves_every_call(
    interval: str, tz: str, anchor: int, offset: int, data: st.DataObject
) -> None:
    """Random minute buckets in and around any series: the points hold exactly the ones in
    [from, to) -- each in the point whose [start, next) contains it -- and lose none."""
    start = anchor + offset
    longest = min(3 * 86_400_000, INTERVALS[interval].minutes * MINUTE * (MAX_POINTS - 10))
    span = data.draw(st.integers(1, longest))
    series = plan(interval, utc(start), utc(start + span), tz, start)
    low, high = series.starts[0] - 2 * HOUR, series.until_ms + 2 * HOUR
    minute = st.integers(low // MINUTE, high // MINUTE - 1).map(lambda m: m * MINUTE)
    numbers = st.tuples(*[st.integers(0, 50)] * 5, st.integers(0, 10**7))
    buckets = data.draw(st.dictionaries(minute, numbers, max_size=60))
    bounds = series.bounds()
    assert all(a < b for a, b in bounds)
    assert all(b == c for (_, b), (c, _) in itertools.pairwise(bounds))
    assert series.starts[0] <= start < series.until_ms <= series.end_ms
    inside = {at: n for at, n in buckets.items() if series.starts[0] <= at < series.until_ms}
    sums = aggregate(series, buckets)
    for slot in range(6):
        assert sum(point[slot] for point in sums) == sum(n[slot] for n in inside.values())
    expected = [[0] * 6 for _ in bounds]
    for at, numbers_at in inside.items():
        (index,) = [i for i, (a, b) in enumerate(bounds) if a <= at < b]
        expected[index] = [x + y for x, y in zip(expected[index], numbers_at, strict=True)]
    assert [list(point) for point in sums] == expected
    view = series_view("c", series, buckets)
    assert sum(p["attempts"] for p in view["points"]) == sum(sum(n[:4]) for n in inside.values())


def test_a_half_hour_dst_change_starts_the_shortened_hour_at_its_first_instant() -> None:
    """Lord Howe, 5 October 2025: 02:00 (+10:30) jumps to 02:30 (+11:00); the local hour 02
    is the half hour from 02:30 and a call at 02:45 is in it, not in 01:00's point."""
    series = plan(
        "1h", "2025-10-05T00:00", "2025-10-05T05:00", "Australia/Lord_Howe",
        now_after("2025-10-05"),
    )  # fmt: skip
    starts = [p["start"] for p in series_view("c", series, {})["points"]]
    assert starts == [
        "2025-10-05T00:00:00+10:30",
        "2025-10-05T01:00:00+10:30",
        "2025-10-05T02:30:00+11:00",
        "2025-10-05T03:00:00+11:00",
        "2025-10-05T04:00:00+11:00",
    ]
    assert hours(series.bounds()) == [1, 1, 0.5, 1, 1]


def test_retention_is_judged_on_from_as_given_for_sub_day_intervals() -> None:
    """400 days of hours from any `from` (rounding it down to the hour needs the extra day
    the store keeps); a day interval counts from the day's first instant."""
    now = ms("2026-05-10T12:02:30+00:00")
    ok = plan("1h", "2025-04-05T12:32:30+00:00", "2025-04-06T00:00:00+00:00", "UTC", now)
    assert utc(ok.starts[0]) == "2025-04-05T12:00:00+00:00"
    with pytest.raises(TimeWindowError):
        plan("1h", "2025-04-05T12:00:00+00:00", "2025-04-06T00:00:00+00:00", "UTC", now)
    with pytest.raises(TimeWindowError):
        plan("1d", "2025-04-05T17:00:00+00:00", "2025-04-07T00:00:00+00:00", "UTC", now)


def test_the_window_pattern_is_exactly_the_windows_accepted() -> None:
    """The schema's pattern for `window` admits what window_minutes accepts, and no more."""
    import re as regex

    from processors.domain.timeseries import WINDOW_PATTERN, window_minutes

    pattern = regex.compile(WINDOW_PATTERN)
    for text in (
        [f"{n}m" for n in range(0, 1500)]
        + [f"{n}h" for n in range(0, 30)]
        + [
            "",
            "15",
            "m",
            "015m",
            "1d",
            "2H",
            " 5m",
            "1.5h",
            "24h0",
            "1441m",
        ]
    ):
        try:
            window_minutes(text)
            accepted = True
        except TimeWindowError:
            accepted = False
        assert (pattern.fullmatch(text) is not None) == accepted, text
