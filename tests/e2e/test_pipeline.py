"""The whole system: produce --raw (bad lines included) -> broker -> worker -> valkey -> API."""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx
import redis

from processors.tools.embedded import EmbeddedInfra
from processors.tools.simulate import Simulation
from tests.conftest import wait_until
from tests.e2e.conftest import Proc, read_topic, run_cli, token
from tests.oracle import Expected, check_invariants, comparable_batches

TERMINAL = ("completed", "failed", "busy", "no_answer", "skipped", "max_retries_reached")

BAD_LINES: list[tuple[bytes, str]] = [
    (b"this is not json", "invalid_json"),
    (b"[1, 2, 3]", "not_an_object"),
    (b'{"event_type": "contact.teleported", "campaign_id": "cmp_x"}', "unknown_event_type"),
    (b'{"event_type": "contact.status_changed", "event_id": "e"}', "missing_field"),
]


def bad_variants(valid: dict[str, Any]) -> list[tuple[bytes, str]]:
    """Invalid copies of a valid contact event, one per reason."""

    def variant(**changes: Any) -> bytes:
        return json.dumps({**valid, **changes}).encode()

    return [
        (variant(status="teleported"), "unknown_status"),
        (variant(retry_count=-2), "negative_count"),
        (variant(version="7"), "invalid_field"),
        (variant(contact_id="con {1}:*"), "invalid_id"),
        (variant(padding="x" * 70_000), "oversized"),
    ]


def api_get(url: str, path: str, tok: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{url}{path}", headers={"Authorization": f"Bearer {tok}"}, params=params, timeout=10
    )


def all_batches(url: str, campaign: str, tok: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page = api_get(
            url, f"/api/v1/campaigns/{campaign}/batches", tok, skip=len(rows), limit=500
        ).json()
        rows += page
        if len(page) < 500:
            return rows


def matches(url: str, expected: Expected, tokens: dict[str, str]) -> bool:
    for campaign in expected.campaigns:
        tok = tokens[expected.owner[campaign]]
        response = api_get(url, f"/api/v1/campaigns/{campaign}/stats", tok)
        if response.status_code != 200 or response.json() != expected.stats(campaign):
            return False
    return True


def assert_exact(api_url: str, expected: Expected, tokens: dict[str, str]) -> None:
    """Wait until both endpoints of every campaign equal the oracle; check the invariants."""
    wait_until(
        lambda: matches(api_url, expected, tokens), timeout=120, what="the API to equal the oracle"
    )
    orgs = sorted(set(expected.owner.values()))
    wait_until(  # announced right after the apply that the campaigns already show
        lambda: all(
            api_get(api_url, "/api/v1/stats", tokens[org]).json() == expected.org_stats(org)
            for org in orgs
        ),
        timeout=30,
        what="every organization's rollup to equal the oracle",
    )
    for campaign in expected.campaigns:
        tok = tokens[expected.owner[campaign]]
        stats = api_get(api_url, f"/api/v1/campaigns/{campaign}/stats", tok).json()
        batches = all_batches(api_url, campaign, tok)
        assert comparable_batches(batches) == expected.batches(campaign)
        check_invariants(stats, batches)
        for batch in expected.batches(campaign)[:5]:
            progress = api_get(
                api_url, f"/api/v1/campaigns/{campaign}/batches/{batch['batch_id']}/progress", tok
            ).json()
            done = sum(batch["counters"][s] for s in TERMINAL)
            assert progress == {
                "batch_id": batch["batch_id"], "total_contacts": batch["total_contacts"],
                "done": done, "rate_per_minute": 0.0, "eta": None,  # events of long ago
            }  # fmt: skip


def test_produced_stream_is_reflected_exactly(
    infra: EmbeddedInfra, worker: Proc, api_url: str, tmp_path: Any
) -> None:
    """Duplicates, stale versions, messy statuses and bad lines: both endpoints equal the oracle."""
    simulation = Simulation(campaigns=4, organizations=2, seed=42, prefix="e2e")
    events = list(itertools.islice(simulation.events(), 6000))
    lines = [json.dumps(e).encode() for e in events]
    bad = BAD_LINES + bad_variants(
        next(e for e in events if e["event_type"] == "contact.status_changed")
    )
    for n, (line, _) in enumerate(bad):
        lines.insert(n * 500 + 7, line)
    stream = tmp_path / "stream.jsonl"
    stream.write_bytes(b"\n".join(lines) + b"\n")

    done = run_cli(infra, "produce", str(stream), "--raw")
    assert done.returncode == 0, done.stderr.decode()

    expected = Expected(events)
    orgs = sorted(set(expected.owner.values()))
    tokens = {org: token(infra, org) for org in orgs}
    assert_exact(api_url, expected, tokens)

    # Tenancy: a token of one organization never sees the other's campaigns.
    foreign = next(c for c in expected.campaigns if expected.owner[c] != orgs[0])
    assert (
        api_get(api_url, f"/api/v1/campaigns/{foreign}/stats", tokens[orgs[0]]).status_code == 404
    )

    # Dead letters: every bad line, with its reason, source and original bytes.
    import hashlib

    mine = {hashlib.sha256(line).hexdigest() for line, _ in bad}
    records = read_topic(infra.broker.bootstrap, "dialer.dead_letter", len(bad))
    letters = [x for x in (json.loads(r.value) for r in records) if x["original_sha256"] in mine]
    assert sorted(letter["reason"] for letter in letters) == sorted(reason for _, reason in bad)
    by_reason = {letter["reason"]: letter for letter in letters}
    assert by_reason["invalid_json"]["original"] == "this is not json"
    assert by_reason["oversized"]["truncated"] is True
    assert by_reason["oversized"]["original_size"] > 64 * 1024
    assert all(
        letter["source_topic"] == "dialer.contacts" and letter["source_offset"] >= 0
        for letter in letters
    )

    # Conservation: every line is applied, ignored as stale/duplicate, or dead-lettered.
    client = redis.Redis.from_url(infra.valkey.url, decode_responses=True)
    applied = stale = 0
    for campaign in expected.campaigns:
        fields = client.hgetall(f"ds:{{{campaign}}}:stats")
        applied += int(fields.get("events:applied", 0))
        stale += int(fields.get("events:stale", 0))
    assert applied + stale + len(letters) == len(lines)


def test_tenant_mismatch_is_dead_lettered_and_changes_nothing(
    infra: EmbeddedInfra, worker: Proc, api_url: str, tmp_path: Any
) -> None:
    """A campaign stays with the first organization; an intruder's events go to dead letter."""
    own = Simulation(campaigns=1, organizations=1, seed=7, prefix="tenant")
    events = list(itertools.islice(own.events(), 300))
    first = tmp_path / "own.jsonl"
    first.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert run_cli(infra, "produce", str(first)).returncode == 0
    expected = Expected(events)
    (campaign,) = expected.campaigns
    owner_token = token(infra, expected.owner[campaign])
    wait_until(
        lambda: matches(api_url, expected, {expected.owner[campaign]: owner_token}), timeout=60
    )
    before_letters = len(read_topic(infra.broker.bootstrap, "dialer.dead_letter", 0, timeout=2))

    intruder = [
        {
            **e,
            "organization_id": "org_intruder",
            "event_id": e["event_id"] + "_x",
            "version": e["version"] + 100,
        }
        for e in events[:20]
    ]
    second = tmp_path / "intruder.jsonl"
    second.write_text("\n".join(json.dumps(e) for e in intruder) + "\n")
    assert run_cli(infra, "produce", str(second)).returncode == 0
    letters = read_topic(infra.broker.bootstrap, "dialer.dead_letter", before_letters + 20)
    intruders = [
        letter
        for letter in (json.loads(r.value) for r in letters)
        if "org_intruder" in letter["original"]
    ]
    assert len(intruders) == 20
    assert {letter["reason"] for letter in intruders} == {"tenant_mismatch"}
    assert matches(api_url, expected, {expected.owner[campaign]: owner_token})
    intruder_token = token(infra, "org_intruder")
    assert (
        api_get(api_url, f"/api/v1/campaigns/{campaign}/stats", intruder_token).status_code == 404
    )


def test_produce_refuses_invalid_lines_without_raw(infra: EmbeddedInfra, tmp_path: Any) -> None:
    """Without --raw, invalid lines are reported with their numbers and the exit code is 1."""
    good = next(Simulation(seed=5, prefix="refuse").events())
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps(good) + "\nnot json\n" + json.dumps({**good, "status": "??"}) + "\n")
    done = run_cli(infra, "produce", str(path))
    assert done.returncode == 1
    err = done.stderr.decode()
    assert "line 2: invalid_json" in err and "line 3: unknown_status" in err
    assert "published 1 messages" in err
    missing = run_cli(infra, "produce", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2
