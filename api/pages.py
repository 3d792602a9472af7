"""Rendered batches, kept per process: whole pages by revision, and single batches by
their content.

A page of 50 batches is 50 states and 50 views. A dashboard wall or many supervisors on one
campaign ask for the same page at the same revision many times: `Pages` keeps the body
rendered at a revision, served only to a request that read the same revision (the same
ETag) first; the page was read after that revision (`batches_answer`), so it is the page of
that revision exactly. While a campaign changes, every read finds a new revision, but
most batches of a page are as they were: a page read (BATCH_PAGE) returns each batch's
packed state, and `Fragments` keeps each batch's JSON under the state it was rendered
from, so only a batch whose state changed is rendered again -- a lookup by content, which
can never serve a stale batch. Least recently used entries leave beyond `max_bytes`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Sized(Generic[K, V]):
    """A least-recently-used map bounded by the bytes its values weigh."""

    def __init__(self, max_bytes: int, weight: Callable[[V], int]) -> None:
        self.max_bytes = max_bytes
        self._weight = weight
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._bytes = 0

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: K, value: V) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= self._weight(old)
        size = self._weight(value)
        if size > self.max_bytes:
            return
        self._entries[key] = value
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= self._weight(evicted)


class Pages:
    """Page bodies by (campaign, query), each with the ETag of the revision it renders."""

    def __init__(self, max_bytes: int = 16 << 20) -> None:
        self._pages: _Sized[tuple[str, str], tuple[str, bytes]] = _Sized(
            max_bytes, lambda entry: len(entry[1])
        )

    def get(self, campaign_id: str, query: str, etag: str) -> bytes | None:
        """The body rendered at the revision named by `etag`, if it is still here."""
        entry = self._pages.get((campaign_id, query))
        if entry is None or entry[0] != etag:
            return None
        return entry[1]

    def put(self, campaign_id: str, query: str, etag: str, body: bytes) -> None:
        """Keep `body` as the page at the revision named by `etag` (replacing an older one)."""
        self._pages.put((campaign_id, query), (etag, body))


class Fragments:
    """The JSON of single batches, by (campaign, batch id, the batch's packed state)."""

    def __init__(self, max_bytes: int = 16 << 20) -> None:
        self._items: _Sized[tuple[str, str, bytes], bytes] = _Sized(
            max_bytes, lambda body: len(body) + KEY_BYTES
        )

    def get(self, campaign_id: str, batch_id: str, state: bytes) -> bytes | None:
        """The batch's JSON as rendered from the packed `state`, if kept."""
        return self._items.get((campaign_id, batch_id, state))

    def put(self, campaign_id: str, batch_id: str, state: bytes, body: bytes) -> None:
        """Keep the JSON rendered from the packed `state`."""
        self._items.put((campaign_id, batch_id, state), body)


#: What an entry's key weighs beside its body (ids and a packed state of some 50 bytes).
KEY_BYTES = 200
