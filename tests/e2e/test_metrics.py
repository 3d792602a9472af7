"""Worker metrics: events by outcome, dead letters by reason, apply latency, lag."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from processors.tools.embedded import EmbeddedInfra
from tests.conftest import wait_until
from tests.e2e.conftest import Proc, run_cli


def sample(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def scrape(url: str) -> str:
    try:
        return httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return ""


def test_worker_metrics_count_outcomes(infra: EmbeddedInfra, worker: Proc, tmp_path: Path) -> None:
    """A dead-lettered line and applied events show up in the worker's /metrics."""
    before = scrape(worker.metrics_url)
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"garbage line\n")
    assert run_cli(infra, "produce", str(path), "--raw").returncode == 0
    invalid = 'reason="invalid_json"'
    wait_until(
        lambda: (
            sample(scrape(worker.metrics_url), "dialer_stats_dead_letters_total", invalid)
            > sample(before, "dialer_stats_dead_letters_total", invalid)
        ),
        timeout=60,
        what="the dead letter to be counted",
    )
    text = scrape(worker.metrics_url)
    assert "dialer_stats_apply_seconds_bucket" in text
    wait_until(
        lambda: "dialer_stats_consumer_lag{" in scrape(worker.metrics_url),
        timeout=30,
        what=f"the lag gauge; worker log: {worker.output()[-2000:]}",
    )
