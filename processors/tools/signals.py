"""Signals as a flag: foreground commands wait for SIGINT, SIGTERM or SIGHUP and then stop
what they started, in order."""

from __future__ import annotations

import signal
import time


def stop_flag() -> dict[str, bool]:
    """A flag that SIGINT, SIGTERM and SIGHUP set (instead of stopping the process)."""
    stop = {"now": False}

    def handler(signum: int, frame: object) -> None:
        stop["now"] = True

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)
    return stop


def wait_for_signal(stop: dict[str, bool] | None = None) -> None:
    stop = stop or stop_flag()
    while not stop["now"]:
        time.sleep(0.2)
