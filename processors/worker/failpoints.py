"""Deterministic crash points for fault-injection tests.

`DIALER_STATS_FAILPOINT=after_apply:3` makes the worker exit abruptly (no cleanup, like
SIGKILL) the third time it passes `after_apply`. Points: `before_apply` (a batch is
validated, nothing written), `after_script` (its scripts ran; no dead letter, registration
or announce of it sent yet), `after_apply` (all of that done, its offsets not yet marked
or committed).
"""

from __future__ import annotations

import logging
import os
from collections import Counter

log = logging.getLogger(__name__)

EXIT_CODE = 86


class Failpoints:
    """Counts passes through named points and crashes at the configured one."""

    def __init__(self, spec: str = "") -> None:
        self.targets: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, _, count = part.partition(":")
            self.targets[name] = int(count or 1)
        self.passes: Counter[str] = Counter()

    def hit(self, name: str) -> None:
        """Pass the point `name`; exit the process if this is the configured pass."""
        if name not in self.targets:
            return
        self.passes[name] += 1
        if self.passes[name] == self.targets[name]:
            log.warning("failpoint %s reached (pass %d): exiting", name, self.passes[name])
            logging.shutdown()
            os._exit(EXIT_CODE)
