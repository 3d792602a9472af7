"""Bad input of every kind: dead-lettered with a reason, counters untouched, never stuck."""

from __future__ import annotations

import json
from typing import Any

from tests.faults.conftest import Scenario


def variants(good: dict[str, Any]) -> list[tuple[bytes, str]]:
    def v(**changes: Any) -> bytes:
        return json.dumps({**good, **changes}).encode()

    return [
        (b"{{{", "invalid_json"),
        (b"\xff\xfe\xfd", "invalid_json"),
        (b"null", "not_an_object"),
        (b'"a string"', "not_an_object"),
        (v(event_type="contact.exploded"), "unknown_event_type"),
        (v(status="on_the_moon"), "unknown_status"),
        (v(retry_count=-1), "negative_count"),
        (v(version="2"), "invalid_field"),
        (v(retry_count=True), "invalid_field"),
        (v(contact_id="con{1}"), "invalid_id"),
        (v(contact_id="con:1"), "invalid_id"),
        (v(campaign_id="cmp*"), "invalid_id"),
        (v(batch_id="btc 1"), "invalid_id"),
        (v(contact_id="контакт"), "invalid_id"),
        (v(padding="x" * 70_000), "oversized"),
        (v(padding="y" * 1_100_000), "oversized"),
        (v(organization_id="org_intruder", contact_id="con_intruder"), "tenant_mismatch"),
    ]


def test_every_bad_input_is_dead_lettered_and_changes_nothing(scenario: Scenario) -> None:
    """Bad lines amid good ones: the good ones are exact, each bad one has its reason."""
    good = next(e for e in scenario.events if e["event_type"] == "contact.status_changed")
    bad = variants(good)
    half = len(scenario.lines) // 2
    scenario.worker("w")
    scenario.produce(scenario.lines[:half], "first")  # the campaign's owner is settled first
    scenario.produce([line for line, _ in bad] + scenario.lines[half:], "second")
    scenario.exact()
    from tests.e2e.conftest import read_topic

    records = read_topic(scenario.infra.broker.bootstrap, "dialer.dead_letter", len(bad) + 3)
    letters = [json.loads(r.value) for r in records]
    reasons = sorted(x["reason"] for x in letters if x["original_sha256"] in _hashes(bad))
    assert reasons == sorted(reason for _, reason in bad)
    big = next(x for x in letters if x["original_size"] > 1_000_000)
    assert big["truncated"] and len(big["original_base64"]) < 8192
    tallies = scenario.tallies()
    assert tallies.get("events:tenant_mismatch") == 1


def _hashes(bad: list[tuple[bytes, str]]) -> set[str]:
    import hashlib

    return {hashlib.sha256(line).hexdigest() for line, _ in bad}
