"""The dashboard in headless Chromium: shows what the API says and follows new events."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

from processors.tools.embedded import EmbeddedInfra
from processors.tools.simulate import Simulation
from tests.conftest import wait_until
from tests.e2e.conftest import Proc, run_cli, token
from tests.e2e.test_pipeline import matches
from tests.oracle import Expected

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def produce(infra: EmbeddedInfra, path: Path, events: list[dict[str, object]]) -> None:
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert run_cli(infra, "produce", str(path)).returncode == 0


def test_dashboard_shows_the_numbers_and_updates(
    infra: EmbeddedInfra, worker: Proc, api_url: str, tmp_path: Path
) -> None:
    """Contact bars equal the API's stats, then change when new events arrive."""
    events = list(itertools.islice(Simulation(campaigns=1, seed=41, prefix="dash").events(), 1500))
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

        produce(infra, tmp_path / "rest.jsonl", rest)
        final = Expected(events).stats(campaign)["contact_counts"]
        assert final != want
        wait_until(lambda: bars(page) == final, timeout=60, what="the dashboard to update")
        shot = os.environ.get("DIALER_STATS_SCREENSHOT") or str(tmp_path / "dashboard.png")
        page.screenshot(path=shot, full_page=True)
        browser.close()
    assert Path(shot).stat().st_size > 10_000
