"""The push stream: snapshot, updates on change, resume, heartbeats, auth and tenancy."""

from __future__ import annotations

import itertools
import json
import queue
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from processors.store import keys
from processors.tools.embedded import EmbeddedInfra
from processors.tools.simulate import Simulation
from tests.conftest import wait_until
from tests.e2e.conftest import Proc, run_cli, token
from tests.e2e.test_pipeline import api_get, matches
from tests.oracle import Expected


class Listener:
    """Reads one SSE connection in a thread: events and comments into a queue."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.items: queue.Queue[dict[str, Any]] = queue.Queue()
        self.status: int | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url, headers or {}), daemon=True)
        self.thread.start()

    def _run(self, url: str, headers: dict[str, str]) -> None:
        with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(5, read=30)) as r:
            self.status = r.status_code
            if r.status_code != 200:
                self.items.put({"status": r.status_code, "body": r.read().decode()})
                return
            event: dict[str, Any] = {}
            for line in r.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith(":"):
                    self.items.put({"comment": line[1:].strip()})
                elif line.startswith("id: "):
                    event["id"] = int(line[4:])
                elif line.startswith("event: "):
                    event["event"] = line[7:]
                elif line.startswith("data: "):
                    event["data"] = json.loads(line[6:])
                elif line == "" and event:
                    self.items.put(event)
                    event = {}

    def next_event(self, timeout: float = 30) -> dict[str, Any]:
        while True:
            item = self.items.get(timeout=timeout)
            if "comment" not in item:
                return item

    def close(self) -> None:
        self._stop.set()


def test_snapshot_then_updates_and_resume(
    infra: EmbeddedInfra, worker: Proc, api_url: str, tmp_path: Path
) -> None:
    """The first event is the current stats; changes arrive pushed; Last-Event-ID resumes."""
    events = list(itertools.islice(Simulation(campaigns=1, seed=31, prefix="sse").events(), 600))
    first, rest = events[:300], events[300:]
    path = tmp_path / "first.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in first) + "\n")
    assert run_cli(infra, "produce", str(path)).returncode == 0
    expected = Expected(first)
    (campaign,) = expected.campaigns
    tok = token(infra, expected.owner[campaign])
    wait_until(lambda: matches(api_url, expected, {expected.owner[campaign]: tok}), timeout=60)

    stream_url = f"{api_url}/api/v1/campaigns/{campaign}/stats/stream"
    listener = Listener(stream_url, {"Authorization": f"Bearer {tok}"})
    snapshot = listener.next_event()
    assert snapshot["event"] == "stats" and snapshot["data"] == expected.stats(campaign)

    path = tmp_path / "rest.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in rest) + "\n")
    assert run_cli(infra, "produce", str(path)).returncode == 0
    final = Expected(events).stats(campaign)
    seen = [snapshot]
    while seen[-1]["data"] != final:
        seen.append(listener.next_event())
    ids = [e["id"] for e in seen]
    assert ids == sorted(set(ids)), ids  # monotonic, no repeats
    listener.close()

    # resume with the last id: nothing new, so no snapshot -- only heartbeats
    resumed = Listener(f"{stream_url}?access_token={tok}", {"Last-Event-ID": str(ids[-1])})
    assert resumed.items.get(timeout=10) == {"comment": "heartbeat"}
    resumed.close()
    # a client that missed revisions gets the current state at once
    behind = Listener(f"{stream_url}?access_token={tok}", {"Last-Event-ID": str(ids[0])})
    assert behind.next_event(timeout=10)["data"] == final
    behind.close()


def test_stream_auth_and_tenancy(
    infra: EmbeddedInfra, api_url: str, worker: Proc, tmp_path: Path
) -> None:
    """Same rules as REST: 401 without a valid token, 404 for another tenant's campaign."""
    events = list(itertools.islice(Simulation(campaigns=1, seed=32, prefix="sseauth").events(), 50))
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert run_cli(infra, "produce", str(path)).returncode == 0
    campaign = events[0]["campaign_id"]
    owner = token(infra, events[0]["organization_id"])
    wait_until(
        lambda: api_get(api_url, f"/api/v1/campaigns/{campaign}/stats", owner).status_code == 200,
        timeout=60,
    )
    url = f"{api_url}/api/v1/campaigns/{campaign}/stats/stream"
    for headers, status in (({}, 401), ({"Authorization": "Bearer gat_nope"}, 401)):
        listener = Listener(url, headers)
        assert listener.items.get(timeout=10)["status"] == status
    stranger = Listener(f"{url}?access_token={token(infra, 'org_stranger')}")
    reply = stranger.items.get(timeout=10)
    assert reply["status"] == 404 and json.loads(reply["body"]) == {"detail": "Campaign not found"}


def produced_and_shown(infra: EmbeddedInfra, api_url: str, tmp_path: Path, prefix: str) -> Any:
    """One campaign's events produced and applied; (expected, campaign, its owner's token)."""
    events = list(itertools.islice(Simulation(campaigns=1, seed=33, prefix=prefix).events(), 300))
    path = tmp_path / f"{prefix}.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert run_cli(infra, "produce", str(path)).returncode == 0
    expected = Expected(events)
    (campaign,) = expected.campaigns
    tok = token(infra, expected.owner[campaign])
    wait_until(lambda: matches(api_url, expected, {expected.owner[campaign]: tok}), timeout=60)
    return expected, campaign, tok


def test_a_reconciliation_repair_is_pushed_to_open_streams(
    infra: EmbeddedInfra, worker: Proc, api_url: str, tmp_path: Path
) -> None:
    """Counters edited behind the worker's back are invisible to a stream (nothing
    announces them); the reconciliation that corrects them pushes the corrected stats."""
    expected, campaign, tok = produced_and_shown(infra, api_url, tmp_path, "ssefix")
    url = f"{api_url}/api/v1/campaigns/{campaign}/stats/stream"
    listener = Listener(url, {"Authorization": f"Bearer {tok}"})
    snapshot = listener.next_event()
    assert snapshot["data"] == expected.stats(campaign)

    client = redis.Redis.from_url(infra.valkey.url, decode_responses=True)
    client.hincrby(keys.stats(campaign), "contacts:completed", 5)
    assert api_get(api_url, f"/api/v1/campaigns/{campaign}/stats", tok).json() != snapshot["data"]
    done = run_cli(infra, "reconcile", "--campaign", campaign, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["campaigns"][0]["drift"] == 1
    pushed = listener.next_event(timeout=15)  # the worker is idle: only the repair announces
    assert pushed["id"] > snapshot["id"] and pushed["data"] == expected.stats(campaign)
    listener.close()


def test_revoking_a_token_ends_its_open_streams(
    infra: EmbeddedInfra, worker: Proc, api_url: str, tmp_path: Path
) -> None:
    """`dialer-stats token revoke` ends a stream opened with that token within about one
    heartbeat (1 s here) with `event: revoked`; reconnecting is refused."""
    _, campaign, tok = produced_and_shown(infra, api_url, tmp_path, "sserevoke")
    url = f"{api_url}/api/v1/campaigns/{campaign}/stats/stream?access_token={tok}"
    listener = Listener(url)
    assert listener.next_event()["event"] == "stats"
    assert run_cli(infra, "token", "revoke", tok).returncode == 0
    revoked_at = time.monotonic()
    assert listener.next_event(timeout=10) == {
        "event": "revoked",
        "data": {"detail": "Invalid or revoked token"},
    }
    listener.thread.join(timeout=5)
    assert not listener.thread.is_alive()  # the server ended the response
    assert time.monotonic() - revoked_at < 3
    again = Listener(url)
    assert again.items.get(timeout=10)["status"] == 401
