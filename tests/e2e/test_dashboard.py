"""The dashboard in headless Chromium: shows what the API says and follows new events;
its charts of call records by event time show the calls and the connect rate."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from playwright.sync_api import sync_playwright

from processors.tools.embedded import EmbeddedInfra
from processors.tools.simulate import Simulation
from tests.conftest import wait_until
from tests.e2e.conftest import Proc, run_cli, token
from tests.e2e.test_pipeline import matches
from tests.oracle import Expected, latest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def produce(infra: EmbeddedInfra, path: Path, events: list[dict[str, object]]) -> None:
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert run_cli(infra, "produce", str(path)).returncode == 0


def chart(page: Any, element: str) -> dict[str, Any]:
    """What a chart shows: its canvases, points and calls (set when it draws a series)."""
    return page.evaluate(  # type: ignore[no-any-return]
        """(id) => {
          const el = document.getElementById(id);
          return {
            canvases: el.querySelectorAll("canvas").length,
            legend: [...el.querySelectorAll(".u-legend .u-label")].map((l) => l.textContent),
            interval: el.dataset.interval || "",
            points: Number(el.dataset.points || -1),
            attempts: Number(el.dataset.attempts || -1),
            error: el.dataset.error || "",
          };
        }""",
        element,
    )


def test_dashboard_shows_the_numbers_and_updates(
    infra: EmbeddedInfra, worker: Proc, api_url: str, tmp_path: Path
) -> None:
    """Contact bars equal the API's stats, then change when new events arrive; the last
    hour's chart and connect rate, and today's chart, count every call record."""
    # Event times from ten minutes ago (the simulation runs about six minutes of them): the
    # last 15 minutes hold the batches' progress, so they have a rate and an ETA.
    start = datetime.now(UTC) - timedelta(minutes=10)
    simulation = Simulation(campaigns=1, seed=41, prefix="dash", start=start)
    events = list(itertools.islice(simulation.events(), 1500))
    first, rest = events[:800], events[800:]
    produce(infra, tmp_path / "first.jsonl", first)
    expected = Expected(first)
    (campaign,) = expected.campaigns
    tok = token(infra, expected.owner[campaign])
    wait_until(lambda: matches(api_url, expected, {expected.owner[campaign]: tok}), timeout=60)

    def bars(page: object) -> dict[str, int]:
        rows = page.locator("#contacts .bar")  # type: ignore[attr-defined]
        return {
            rows.nth(i).get_attribute("data-key"): int(rows.nth(i).locator(".num").inner_text())
            for i in range(rows.count())
        }

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{api_url}/dashboard#token={tok}")
        want = expected.stats(campaign)["contact_counts"]
        wait_until(lambda: bars(page) == want, timeout=30, what="the dashboard's first numbers")
        assert page.locator("#campaign").input_value() == campaign
        rows = page.locator("#batches tbody tr").count()
        assert rows == len(expected.batches(campaign))

        # the organization: its rollup, and the campaign's row with a sparkline of its hour
        org = expected.owner[campaign]
        rollup = sum(expected.org_stats(org)["contact_counts"].values())
        wait_until(
            lambda: page.evaluate("document.body.dataset.orgContacts") == str(rollup),
            timeout=30,
            what="the organization overview",
        )
        row = page.locator(f'#org-campaigns tr[data-campaign="{campaign}"]')
        assert row.count() == 1 and row.locator("svg.spark polyline").count() == 1
        hour_calls = int(row.locator("svg.spark").get_attribute("data-calls") or "-1")
        assert hour_calls == expected.stats(campaign)["total_call_attempts"]

        # batch progress: the ETA of an unfinished batch is the API's (a few seconds apart)
        def etas() -> dict[str, str]:
            cells = page.locator("#batches tbody tr[data-eta]")
            return {
                cells.nth(i).get_attribute("data-batch") or "": cells.nth(i).get_attribute(
                    "data-eta"
                )
                or ""
                for i in range(cells.count())
            }

        wait_until(lambda: any(etas().values()), timeout=40, what="a batch's ETA")
        batch_id, shown_eta = next((b, e) for b, e in etas().items() if e)
        progress = httpx.get(
            f"{api_url}/api/v1/campaigns/{campaign}/batches/{batch_id}/progress",
            headers={"Authorization": f"Bearer {tok}"},
        ).json()
        assert progress["eta"] is not None
        gap = datetime.fromisoformat(progress["eta"]) - datetime.fromisoformat(shown_eta)
        assert abs(gap) <= timedelta(minutes=5), (progress, shown_eta)

        produce(infra, tmp_path / "rest.jsonl", rest)
        final = Expected(events).stats(campaign)["contact_counts"]
        assert final != want
        wait_until(lambda: bars(page) == final, timeout=60, what="the dashboard to update")

        calls = Expected(events).stats(campaign)
        attempts = calls["total_call_attempts"]
        rate = calls["call_counters"]["completed_calls"] / attempts
        wait_until(
            lambda: chart(page, "minute-chart")["attempts"] == attempts,
            timeout=30,
            what="the last hour's chart to count every call",
        )
        shown = chart(page, "minute-chart")
        assert shown["canvases"] >= 1 and shown["points"] == 60 and not shown["error"]
        assert shown["interval"] == "1m"
        assert shown["legend"][1:] == ["no_answer", "busy", "failed", "completed", "connect rate"]
        kpi = page.locator("#hour-connect-rate")
        assert float(kpi.get_attribute("data-value") or "nan") == rate
        assert abs(float(kpi.locator("b").inner_text().removesuffix(" %")) - 100 * rate) <= 0.05
        assert page.locator("#hour-attempts b").inner_text() == str(attempts)

        # today, in the browser's zone: the records since its local midnight
        zone = ZoneInfo(page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone"))
        midnight = datetime.now(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        today = sum(
            1
            for e in latest(events).values()
            if e["event_type"] == "call_record.completed"
            and datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00")) >= midnight
        )

        def day_chart() -> tuple[str, int]:
            shown = chart(page, "day-chart")
            return shown["interval"], shown["attempts"]

        for interval in ("5m", "1h"):
            page.select_option("#interval", interval)
            wait_until(
                lambda want=(interval, today): day_chart() == want,  # type: ignore[misc]
                timeout=30,
                what=f"today's chart at {interval} to count every call of today",
            )
        assert chart(page, "day-chart")["canvases"] >= 1
        page.select_option("#interval", "15m")
        shot = os.environ.get("DIALER_STATS_SCREENSHOT") or str(tmp_path / "dashboard.png")
        page.screenshot(path=shot, full_page=True)
        browser.close()
    assert Path(shot).stat().st_size > 10_000
