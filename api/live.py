"""One Redis pub/sub subscription per API process, fanned out to the stream clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator

from processors.store import keys
from processors.store.client import Store

log = logging.getLogger(__name__)


class Updates:
    """Wakes the streams of a campaign when a worker announces a change to it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        #: the stats hash read once per change and shared by every stream of the campaign
        self.latest: dict[str, dict[str, str]] = {}
        self._reading: set[str] = set()
        self._dirty: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.asynccontextmanager
    async def watch(self, campaign_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever the campaign changes (the stream clears it)."""
        changed = asyncio.Event()
        self._waiters[campaign_id].add(changed)
        try:
            yield changed
        finally:
            self._waiters[campaign_id].discard(changed)
            if not self._waiters[campaign_id]:
                del self._waiters[campaign_id]
                self.latest.pop(campaign_id, None)

    async def _refresh(self, campaign_id: str) -> None:
        try:
            while True:
                self._dirty.discard(campaign_id)
                try:
                    self.latest[campaign_id] = await self.store.stats_fields(campaign_id)
                except Exception as exc:  # the streams read for themselves meanwhile
                    log.warning("reading %s for its streams failed: %s", campaign_id, exc)
                    self.latest.pop(campaign_id, None)
                for changed in self._waiters.get(campaign_id, ()):
                    changed.set()
                if campaign_id not in self._dirty:
                    return
        finally:
            self._reading.discard(campaign_id)

    def wake_all(self) -> None:
        """Wake every stream (after a lost subscription: something may have changed)."""
        self.latest.clear()
        for waiters in self._waiters.values():
            for changed in waiters:
                changed.set()

    async def _listen(self) -> None:
        while True:
            try:
                pubsub = self.store.client.pubsub()
                await pubsub.psubscribe(keys.UPDATES_PATTERN)
                self.wake_all()
                async for message in pubsub.listen():
                    if message["type"] != "pmessage":
                        continue
                    campaign_id = keys.campaign_of_channel(message["channel"])
                    if campaign_id not in self._waiters:
                        continue
                    if campaign_id in self._reading:
                        self._dirty.add(campaign_id)  # read again when this read is done
                    else:
                        self._reading.add(campaign_id)
                        task = asyncio.create_task(self._refresh(campaign_id))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away: resubscribe
                log.warning("updates subscription lost (%s); resubscribing", exc)
                await asyncio.sleep(1.0)
