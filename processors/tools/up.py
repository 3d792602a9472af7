"""`dialer-stats up`: the whole system on one machine, stopped in order on a signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import suppress

from processors.settings import Settings
from processors.tools.embedded import EmbeddedInfra, own_process_group
from processors.tools.signals import stop_flag, wait_for_signal


def run(
    settings_of: Callable[[], Settings],
    demo_token: Callable[[Settings], str],
    *,
    campaigns: int,
    rate: float,
    port: int,
    embedded: bool,
    mongodb: str | None,
    drop_rate: float,
    reconcile_every: float,
) -> None:
    """Broker and valkey (unless not `embedded`), worker, API and simulator (and with
    `mongodb`, a reconciler), until a signal; prints the URLs and a demo token."""
    # A signal only sets the flag from here on: every way out goes through the finally
    # below, which stops the children in order -- simulator, API, worker -- and then the
    # broker and valkey. Each child is in a process group of its own (a terminal's
    # Ctrl-C reaches this process alone) and ends with this process however it ends.
    stop = stop_flag()
    infra_ctx = (
        EmbeddedInfra(settings_of(), kafka_port=0, redis_port=0, own_groups=True)
        if embedded
        else None
    )
    children: list[subprocess.Popen[bytes]] = []
    try:
        if infra_ctx is not None:
            infra_ctx.start()
            os.environ.update(infra_ctx.env)
        settings = settings_of()
        exe = [sys.executable, "-m", "processors.cli"]
        children.append(
            subprocess.Popen([*exe, "worker", "--loglevel", "warning"], **own_process_group())
        )
        children.append(subprocess.Popen([*exe, "api", "--port", str(port)], **own_process_group()))
        token = demo_token(settings)
        url = f"http://{settings.api_host}:{port}"
        if not wait_http(f"{url}/healthz", timeout=30, stop=stop, children=children):
            return  # stopped while starting
        # live event times, so that the dashboard's charts of the last hour and today fill
        simulate = [*exe, "simulate", "--wall-clock", "--campaigns", str(campaigns)]
        simulate += ["--rate", str(rate)]
        if mongodb:
            # a dual write with gaps, and the reconciler that finds and repairs them
            simulate += ["--mongodb", mongodb, "--drop-rate", str(drop_rate)]
            reconcile = [*exe, "reconcile", "--source", mongodb, "--every", str(reconcile_every)]
            children.append(
                subprocess.Popen(reconcile, stdout=subprocess.DEVNULL, **own_process_group())
            )
        children.append(subprocess.Popen(simulate, **own_process_group()))
        sys.stdout.write(
            f"\nKAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers}\n"
            f"REDIS_URL={settings.redis_url}\n"
            f"Dashboard: {url}/dashboard#token={token}\n"
            f"API docs:  {url}/docs\n"
            f"Token (organization org_0_0): {token}\n"
            f'Try: curl -H "Authorization: Bearer {token}" {url}/api/v1/campaigns/cmp_0_0/stats\n'
            "Ctrl-C stops everything.\n\n"
        )
        sys.stdout.flush()
        wait_for_signal(stop)
    finally:
        try:
            for child in reversed(children):
                child.send_signal(signal.SIGTERM)
            for child in reversed(children):
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
        finally:
            if infra_ctx is not None:
                infra_ctx.stop()


def wait_http(
    url: str,
    timeout: float,
    *,
    stop: dict[str, bool] | None = None,
    children: Sequence[subprocess.Popen[bytes]] = (),
) -> bool:
    """Wait until `url` answers 200 (True), or `stop` is set (False); RuntimeError after
    `timeout`, or as soon as one of `children` has exited."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stop and stop["now"]:
            return False
        for child in children:
            if child.poll() is not None:
                raise RuntimeError(f"{child.args!r} exited with {child.returncode}")
        with suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")
