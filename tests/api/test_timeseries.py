"""Time windows over HTTP, on fakeredis and real valkey: call records applied through the
store come back as the series and windows an independent oracle computes from the events
(latest version of each record, floored in the requested zone by plain datetime
arithmetic); bad queries are 422 with a detail; tenancy, ETag and 304 as for the stats."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from api.routes import timeseries as route
from processors.store.client import Store
from tests.api.serving import auth, freeze_clock, serve
from tests.oracle import latest
from tests.store.test_apply import apply_events
from tests.streams import parsed

CMP, ORG = "cmp_tsapi", "org_tsapi"
OTHER_CMP, OTHER_ORG = "cmp_tsother", "org_tsother"
OUTCOMES = ("completed", "failed", "busy", "no_answer")
SEED_KEYS = [
    "campaign_id", "contact_counts", "batch_counts", "call_counters", "retry_breakdown",
    "in_flight_contacts", "total_call_attempts", "follow_up_attempts",
]  # fmt: skip
MINUTE = timedelta(minutes=1)


def at_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def record(index: int, version: int, rng: random.Random, lo: int, hi: int) -> dict[str, Any]:
    """One version of a call record: its minute, outcome and duration may all change."""
    event: dict[str, Any] = {
        "event_id": f"r{index}.{version}", "event_type": "call_record.completed",
        "organization_id": ORG, "campaign_id": CMP, "version": version,
        "occurred_at": at_ms(rng.randrange(lo, hi)).replace("+00:00", "Z"),
        "batch_id": "btc_1", "contact_id": f"con_{index % 7}", "execution_id": f"exe_{index}",
        "call_status": rng.choice(OUTCOMES), "is_follow_up": rng.random() < 0.3, "retry_index": 0,
    }  # fmt: skip
    if rng.random() < 0.8:
        event["duration_seconds"] = round(rng.uniform(0, 400), rng.choice((0, 1, 3)))
    return event


class Log:
    """Delivers events like the worker does: fetched batches at increasing offsets."""

    def __init__(self, store: Store) -> None:
        self.store, self.offset = store, 0

    async def deliver(self, events: list[dict[str, Any]], rng: random.Random) -> None:
        position = 0
        while position < len(events):
            chunk = events[position : position + rng.randint(1, 50)]
            log = [
                ("dialer.call_records", 0, self.offset + n, parsed(e)) for n, e in enumerate(chunk)
            ]
            await apply_events(self.store, log)
            self.offset += len(chunk)
            position += len(chunk)


def when(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))


def floor_local(moment: datetime, interval: str, zone: ZoneInfo) -> str:
    """The start of the interval holding `moment` in `zone`, by datetime arithmetic."""
    local = moment.astimezone(zone)
    if interval == "1d":
        return datetime(local.year, local.month, local.day, tzinfo=zone).isoformat()
    step = {"1m": 1, "5m": 5, "15m": 15, "1h": 60}[interval]
    minute = local.hour * 60 + local.minute
    minute -= minute % step
    floored = local.replace(hour=minute // 60, minute=minute % 60, second=0, microsecond=0)
    return floored.isoformat()


def sums(events: list[dict[str, Any]]) -> list[int]:
    out = [0] * 6
    for event in events:
        out[OUTCOMES.index(event["call_status"])] += 1
        out[4] += int(event["is_follow_up"])
        out[5] += round(event.get("duration_seconds", 0) * 1000)
    return out


def expected_figures(numbers: list[int]) -> dict[str, Any]:
    attempts, completed, talk = sum(numbers[:4]), numbers[0], numbers[5] / 1000
    return {
        "calls": dict(zip(OUTCOMES, numbers[:4], strict=True)),
        "follow_up_calls": numbers[4],
        "attempts": attempts,
        "connect_rate": completed / attempts if attempts else None,
        "talk_seconds": talk,
        "avg_talk_seconds": talk / completed if completed else None,
    }


def oracle(events: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Point start -> figures, from the latest version of every record in [from, to)."""
    zone = ZoneInfo(body["tz"])
    low, high = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])
    grouped: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in latest(events).values():
        if event["campaign_id"] == CMP and low <= when(event) < high:
            grouped[floor_local(when(event), body["interval"], zone)].append(event)
    return {start: expected_figures(sums(group)) for start, group in grouped.items()}


def assert_series_match(events: list[dict[str, Any]], body: dict[str, Any]) -> None:
    expected = oracle(events, body)
    starts = [p["start"] for p in body["points"]]
    assert starts == sorted(starts, key=datetime.fromisoformat) and len(set(starts)) == len(starts)
    assert set(expected) <= set(starts), "a call record fell outside every point"
    zero = expected_figures([0] * 6)
    for point in body["points"]:
        assert {k: v for k, v in point.items() if k != "start"} == expected.get(
            point["start"], zero
        ), point["start"]


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> int:
    """The API's clock, frozen at the test's start (the store's retention uses the real one)."""
    return freeze_clock(monkeypatch, route)


@pytest.fixture
async def seeded(store: Store, now: int) -> tuple[Store, list[dict[str, Any]], Log]:
    """Call records over the last six hours: corrections, duplicates, any order."""
    rng = random.Random(13)
    lo, hi = now - 6 * 3_600_000 + 60_000, now - 60_000
    events = [
        record(i, v, rng, lo, hi) for i in range(150) for v in range(1, rng.randint(1, 3) + 1)
    ]
    # and a dozen in the last quarter hour, for the windows
    events += [record(500 + i, 1, rng, now - 12 * 60_000, now - 3 * 60_000) for i in range(12)]
    events += [dict(e) for e in rng.sample(events, len(events) // 5)]
    rng.shuffle(events)
    log = Log(store)
    await log.deliver(events, rng)
    other = {**record(900, 1, rng, lo, hi), "organization_id": OTHER_ORG, "campaign_id": OTHER_CMP}
    await log.deliver([other], rng)
    await store.register_campaigns({CMP: ORG, OTHER_CMP: OTHER_ORG})
    return store, events, log


@pytest.fixture
async def client(seeded: tuple[Store, Any, Any]) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(seeded[0]) as http:
        yield http


@pytest.fixture
async def headers(seeded: tuple[Store, Any, Any]) -> dict[str, str]:
    return await auth(seeded[0], ORG)


SERIES = f"/api/v1/campaigns/{CMP}/timeseries"


@pytest.mark.parametrize(
    ("interval", "tz"),
    [
        ("1m", "UTC"),
        ("5m", "Europe/Paris"),
        ("15m", "Asia/Kolkata"),
        ("1h", "America/New_York"),
        ("1d", "Asia/Kathmandu"),
    ],
)
async def test_series_equal_the_oracle_in_any_zone(
    client: httpx.AsyncClient,
    seeded: Any,
    headers: dict[str, str],
    now: int,
    interval: str,
    tz: str,
) -> None:
    """Every point, zeros included, holds exactly the latest versions whose occurred_at lies
    in it; `start` carries the zone's offset."""
    _, events, _ = seeded
    since = at_ms(now - 6 * 3_600_000 - 60_000)
    response = await client.get(
        SERIES, params={"interval": interval, "from": since, "tz": tz}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["campaign_id", "interval", "tz", "from", "to", "points"]
    assert (body["campaign_id"], body["interval"], body["tz"]) == (CMP, interval, tz)
    assert body["from"] == body["points"][0]["start"]
    assert datetime.fromisoformat(body["from"]) <= datetime.fromisoformat(since)
    assert datetime.fromisoformat(body["to"]) >= datetime.fromtimestamp(now / 1000, UTC)
    offset = datetime.fromisoformat(body["points"][0]["start"]).utcoffset()
    assert offset == datetime.now(ZoneInfo(tz)).utcoffset()
    assert_series_match(events, body)
    total = sum(p["attempts"] for p in body["points"])
    assert total == len([e for e in latest(events).values() if e["campaign_id"] == CMP])


@pytest.mark.parametrize("tz", ["America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"])
async def test_a_year_of_days_in_any_zone_equals_the_oracle(
    store: Store, now: int, tz: str
) -> None:
    """Daily points over the last 400 days (two DST changes each way in New York, Lord
    Howe's half hours, Kathmandu's +5:45) hold exactly the call records of each local day,
    corrections and duplicates included."""
    rng = random.Random(400)
    # from is the local midnight of the first record's day: 398 days and under 25 hours ago,
    # so inside the 400 days kept even when that day is a 25-hour one
    lo, hi = now - 398 * 86_400_000, now - 60_000
    events = [
        record(i, v, rng, lo, hi) for i in range(300) for v in range(1, rng.randint(1, 2) + 1)
    ]
    events += [dict(e) for e in rng.sample(events, 30)]
    rng.shuffle(events)
    await Log(store).deliver(events, rng)
    await store.register_campaigns({CMP: ORG})
    headers = await auth(store, ORG)
    since = datetime.fromtimestamp(lo / 1000, ZoneInfo(tz))
    params = {"interval": "1d", "tz": tz, "from": since.date().isoformat() + "T00:00:00"}
    async with serve(store) as http:
        response = await http.get(SERIES, params=params, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["points"]) >= 399
    assert_series_match(events, body)
    lengths = {
        datetime.fromisoformat(b["start"]) - datetime.fromisoformat(a["start"])
        for a, b in zip(body["points"], body["points"][1:], strict=False)
    }
    half_year_on = since + timedelta(days=182)
    has_dst = since.utcoffset() != half_year_on.astimezone(ZoneInfo(tz)).utcoffset()
    assert (len(lengths) > 1) == has_dst  # DST changes make days of 23 or 25 hours
    total = sum(p["attempts"] for p in body["points"])
    assert total == len(latest(events))


async def test_csv_holds_the_same_points_as_the_json(
    client: httpx.AsyncClient, seeded: Any, headers: dict[str, str], now: int
) -> None:
    """`Accept: text/csv`: a header row, then each point of the same query, equal to the
    oracle; null figures are empty fields; the CSV has an ETag of its own."""
    import csv
    import io

    _, events, _ = seeded
    params = {"interval": "15m", "from": at_ms(now - 7 * 3_600_000), "tz": "Asia/Kolkata"}
    as_json = await client.get(SERIES, params=params, headers=headers)
    as_csv = await client.get(SERIES, params=params, headers={**headers, "Accept": "text/csv"})
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert as_csv.headers["vary"] == "Accept" and as_json.headers["vary"] == "Accept"
    assert as_csv.headers["etag"] != as_json.headers["etag"]
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert rows[0] == [
        "start", "completed", "failed", "busy", "no_answer", "follow_up_calls", "attempts",
        "connect_rate", "talk_seconds", "avg_talk_seconds",
    ]  # fmt: skip
    expected = oracle(events, as_json.json())
    zero = expected_figures([0] * 6)
    assert [row[0] for row in rows[1:]] == [p["start"] for p in as_json.json()["points"]]
    for row in rows[1:]:
        want = expected.get(row[0], zero)
        numbers = [int(v) for v in row[1:7]]
        assert numbers == [*want["calls"].values(), want["follow_up_calls"], want["attempts"]]
        for text, value in zip(row[7:], (want["connect_rate"], want["talk_seconds"],
                                         want["avg_talk_seconds"]), strict=True):  # fmt: skip
            assert (text == "") if value is None else float(text) == pytest.approx(value)
    again = await client.get(
        SERIES, params=params,
        headers={**headers, "Accept": "text/csv", "If-None-Match": as_csv.headers["etag"]},
    )  # fmt: skip
    assert again.status_code == 304


@pytest.mark.parametrize(
    ("accept", "csv"),
    [
        (None, False), ("*/*", False), ("application/json", False), ("text/csv", True),
        ("text/*", True), ("application/json, text/csv", False),
        ("text/csv, application/json", True), ("application/json;q=0.5, text/csv", True),
        ("text/csv;q=0.2, application/json;q=0.9", False), ("text/csv;q=0", False),
        ("text/html, text/csv;q=0.8, */*;q=0.1", True), ("*/*, text/csv;q=0.1", False),
        ("text/csv, */*", True), ("*/*, text/csv", True), ("text/csv;q=inf", False),
        ("application/json;q=0, text/*;q=0.1", True),
    ],
)  # fmt: skip
async def test_csv_is_chosen_by_the_accept_header(
    client: httpx.AsyncClient, seeded: Any, headers: dict[str, str], accept: str | None, csv: bool
) -> None:
    """CSV when asked for before JSON, by quality then order; JSON otherwise."""
    extra = {} if accept is None else {"Accept": accept}
    response = await client.get(SERIES, params={"interval": "1h"}, headers={**headers, **extra})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv" if csv else "application/json")


async def test_defaults_are_the_last_24_hours_in_utc(
    client: httpx.AsyncClient, seeded: Any, headers: dict[str, str], now: int
) -> None:
    """interval alone: to = now, from = 24 h before, UTC."""
    _, events, _ = seeded
    body = (await client.get(SERIES, params={"interval": "1h"}, headers=headers)).json()
    day_ago = datetime.fromtimestamp(now / 1000, UTC) - timedelta(hours=24)
    assert body["tz"] == "UTC"
    assert body["from"] == day_ago.replace(minute=0, second=0, microsecond=0).isoformat()
    assert len(body["points"]) in (24, 25)
    assert_series_match(events, body)


async def test_corrections_move_calls_and_replays_change_nothing(
    client: httpx.AsyncClient, seeded: Any, headers: dict[str, str], now: int
) -> None:
    """A higher version leaves its old minute for its new one (new ETag); the same events
    delivered again change nothing (the ETag still answers 304)."""
    _, events, log = seeded
    params = {"interval": "1m", "from": at_ms(now - 7 * 3_600_000), "tz": "Europe/Paris"}
    first = await client.get(SERIES, params=params, headers=headers)
    target = max(
        (e for e in latest(events).values() if e["campaign_id"] == CMP), key=lambda e: e["version"]
    )
    moved = {
        **target,
        "event_id": "moved",
        "version": target["version"] + 1,
        "occurred_at": at_ms(now - 2 * 3_600_000 - 30_000).replace("+00:00", "Z"),
        "call_status": "busy" if target["call_status"] != "busy" else "failed",
    }
    await log.deliver([moved], random.Random(0))
    events = [*events, moved]
    second = await client.get(
        SERIES, params=params, headers={**headers, "If-None-Match": first.headers["etag"]}
    )
    assert second.status_code == 200 and second.headers["etag"] != first.headers["etag"]
    assert_series_match(events, second.json())
    assert second.json() != first.json()

    await log.deliver(events, random.Random(1))  # everything again, at new offsets
    third = await client.get(
        SERIES, params=params, headers={**headers, "If-None-Match": second.headers["etag"]}
    )
    assert third.status_code == 304 and third.content == b""


async def test_etag_names_the_query_and_the_revision(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """The same query answers 304; another zone or interval is another representation."""
    params = {"interval": "15m", "tz": "Asia/Kolkata"}
    first = await client.get(SERIES, params=params, headers=headers)
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "no-cache" and first.headers["x-last-event-at"]
    again = await client.get(SERIES, params=params, headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag
    for other in ({**params, "tz": "UTC"}, {**params, "interval": "1h"}):
        response = await client.get(
            SERIES, params=other, headers={**headers, "If-None-Match": etag}
        )
        assert response.status_code == 200 and response.headers["etag"] != etag


@pytest.mark.parametrize(
    ("params", "param", "message"),
    [
        ({"interval": "2m"}, "interval", "Input should be '1m', '5m', '15m', '1h' or '1d'"),
        ({}, "interval", "Field required"),
        ({"interval": "1h", "tz": "Mars/Olympus"}, "tz", "unknown time zone 'Mars/Olympus'"),
        ({"interval": "1h", "from": "2026-11-29T10:00Z", "to": "2026-11-29T10:00Z"}, "from",
         "from must be before to"),
        ({"interval": "1h", "from": "2026-11-29T11:00Z", "to": "2026-11-29T10:00Z"}, "from",
         "from must be before to"),
        ({"interval": "1m", "from": "-26h"}, "from", "points of 1m exceed the limit of 1500"),
        ({"interval": "5m", "from": "-50h", "to": "-49h"}, "from", "kept 48 hours"),
        ({"interval": "1h", "from": "-410d", "to": "-409d"}, "from", "kept 400 days"),
        ({"interval": "1h", "to": "tomorrow"}, "to", "to is not an ISO 8601 time"),
    ],
)  # fmt: skip
async def test_bad_queries_are_422_with_a_detail(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    now: int,
    params: dict[str, str],
    param: str,
    message: str,
) -> None:
    """Unknown interval or zone, from >= to, > 1,500 points, beyond retention, bad times."""
    for name, value in params.items():  # "-26h": that long before now
        if value.startswith("-"):
            unit = {"h": 3_600_000, "d": 86_400_000}[value[-1]]
            params[name] = at_ms(now - int(value[1:-1]) * unit)
    response = await client.get(SERIES, params=params, headers=headers)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", param]
    assert message in error["msg"]


async def test_tokens_and_tenants(client: httpx.AsyncClient, seeded: Any) -> None:
    """No or unknown token: 401; another organization's campaign looks missing: 404."""
    store = seeded[0]
    for bad in ({}, {"Authorization": "Bearer gat_nobody"}):
        response = await client.get(SERIES, params={"interval": "1h"}, headers=bad)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    other = {"Authorization": f"Bearer {await store.create_token(OTHER_ORG)}"}
    for campaign in (CMP, "cmp_missing"):
        response = await client.get(
            f"/api/v1/campaigns/{campaign}/timeseries", params={"interval": "1h"}, headers=other
        )
        assert response.status_code == 404
        assert response.json() == {"detail": "Campaign not found"}
    mine = await client.get(
        f"/api/v1/campaigns/{OTHER_CMP}/timeseries", params={"interval": "1h"}, headers=other
    )
    assert sum(p["attempts"] for p in mine.json()["points"]) == 1


STATS = f"/api/v1/campaigns/{CMP}/stats"


@pytest.mark.parametrize(("window", "minutes"), [("15m", 15), ("1h", 60), ("24h", 1440)])
async def test_stats_window_equals_the_oracle(
    client: httpx.AsyncClient,
    seeded: Any,
    headers: dict[str, str],
    now: int,
    window: str,
    minutes: int,
) -> None:
    """`window` adds the call records of the current minute and the N - 1 before it; the
    seed's keys are unchanged."""
    _, events, _ = seeded
    plain = (await client.get(STATS, headers=headers)).json()
    response = await client.get(STATS, params={"window": window}, headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [*SEED_KEYS, "window"]
    assert {k: body[k] for k in SEED_KEYS} == plain
    current = datetime.fromtimestamp(now / 1000, UTC).replace(second=0, microsecond=0)
    low, high = current - (minutes - 1) * MINUTE, current + MINUTE
    inside = [
        e for e in latest(events).values() if e["campaign_id"] == CMP and low <= when(e) < high
    ]
    assert len(inside) >= 12
    figures = expected_figures(sums(inside))
    assert body["window"] == {
        "minutes": minutes,
        "calls": figures["calls"],
        "attempts": figures["attempts"],
        "connect_rate": figures["connect_rate"],
        "dials_per_minute": figures["attempts"] / minutes,
        "avg_talk_seconds": figures["avg_talk_seconds"],
    }


async def test_stats_window_etag_and_bad_windows(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """A window has its own ETag (304 while nothing changes); 0m, 25h, 15 are 422."""
    plain = await client.get(STATS, headers=headers)
    windowed = await client.get(STATS, params={"window": "15m"}, headers=headers)
    etag = windowed.headers["etag"]
    assert etag != plain.headers["etag"]
    again = await client.get(
        STATS, params={"window": "15m"}, headers={**headers, "If-None-Match": etag}
    )
    assert again.status_code == 304
    for bad in ("0m", "25h", "15", "1d"):
        response = await client.get(STATS, params={"window": bad}, headers=headers)
        assert response.status_code == 422
        (error,) = response.json()["detail"]
        assert error["loc"] == ["query", "window"] and "1m to 24h" in error["msg"]


async def test_openapi_documents_the_series_and_the_window(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/api/v1/campaigns/{campaign_id}/timeseries"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert {"interval", "from", "to", "tz"} <= set(params)
    assert params["interval"]["schema"]["enum"] == ["1m", "5m", "15m", "1h", "1d"]
    assert all(params[name].get("description") for name in ("interval", "from", "to", "tz"))
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/Timeseries")
    assert {"304", "401", "404", "422"} <= set(operation["responses"])
    point = spec["components"]["schemas"]["TimeseriesPoint"]["properties"]
    assert {"start", "calls", "attempts", "connect_rate", "avg_talk_seconds"} <= set(point)
    stats = spec["paths"]["/api/v1/campaigns/{campaign_id}/stats"]["get"]
    assert "window" in {p["name"] for p in stats["parameters"]}


async def test_the_dashboard_serves_its_chart_library_locally(client: httpx.AsyncClient) -> None:
    """uPlot is served by the API itself (no CDN); other names under static/ are not."""
    page = (await client.get("/dashboard")).text
    assert "/dashboard/vendor/uPlot.iife.min.js" in page and "//cdn" not in page
    script = await client.get("/dashboard/vendor/uPlot.iife.min.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )
    assert "uPlot" in script.text[:200]
    style = await client.get("/dashboard/vendor/uPlot.min.css")
    assert style.headers["content-type"].startswith("text/css")
    for name in ("README.md", "..%2Fdashboard.html", "app.js"):
        assert (await client.get(f"/dashboard/vendor/{name}")).status_code == 404
