"""Rendered pages of batches, one revision each: a page is read and rendered once per
revision in each process, however many clients ask for it meanwhile.

A page of 50 batches is 50 hash reads and 50 views (about 5 ms of CPU); a dashboard wall
or many supervisors on one campaign ask for the same page at the same revision many times.
An entry is served only to a request that read the same revision (the same ETag) first,
and the page was read after that revision (`batches_answer`), so it is the page of that
revision exactly. Least recently used entries leave beyond `max_bytes`.
"""

from __future__ import annotations

from collections import OrderedDict


class Pages:
    """Page bodies by (campaign, query), each with the ETag of the revision it renders."""

    def __init__(self, max_bytes: int = 16 << 20) -> None:
        self.max_bytes = max_bytes
        self._pages: OrderedDict[tuple[str, str], tuple[str, bytes]] = OrderedDict()
        self._bytes = 0

    def get(self, campaign_id: str, query: str, etag: str) -> bytes | None:
        """The body rendered at the revision named by `etag`, if it is still here."""
        entry = self._pages.get((campaign_id, query))
        if entry is None or entry[0] != etag:
            return None
        self._pages.move_to_end((campaign_id, query))
        return entry[1]

    def put(self, campaign_id: str, query: str, etag: str, body: bytes) -> None:
        """Keep `body` as the page at the revision named by `etag` (replacing an older one)."""
        old = self._pages.pop((campaign_id, query), None)
        if old is not None:
            self._bytes -= len(old[1])
        if len(body) > self.max_bytes:
            return
        self._pages[(campaign_id, query)] = (etag, body)
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            _, (_, evicted) = self._pages.popitem(last=False)
            self._bytes -= len(evicted)
