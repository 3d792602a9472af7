"""The rendered-page store: served only at the revision it renders, bounded in bytes."""

from __future__ import annotations

from api.pages import KEY_BYTES, Fragments, Pages


def test_a_page_is_served_only_at_its_revision() -> None:
    """Another ETag (a newer revision) finds nothing; a newer page replaces the older."""
    pages = Pages()
    pages.put("c", "0:50:", '"r1"', b"one")
    assert pages.get("c", "0:50:", '"r1"') == b"one"
    assert pages.get("c", "0:50:", '"r2"') is None
    assert pages.get("c", "0:10:", '"r1"') is None and pages.get("d", "0:50:", '"r1"') is None
    pages.put("c", "0:50:", '"r2"', b"two")
    assert pages.get("c", "0:50:", '"r1"') is None
    assert pages.get("c", "0:50:", '"r2"') == b"two"


def test_least_recently_used_pages_leave_beyond_the_budget() -> None:
    """The bytes kept stay within max_bytes; the page read last stays; too big is not kept."""
    pages = Pages(max_bytes=10)
    pages.put("c", "a", "e", b"1234")
    pages.put("c", "b", "e", b"1234")
    assert pages.get("c", "a", "e") == b"1234"  # now the most recently used
    pages.put("c", "c", "e", b"1234")  # 12 bytes: the least recently used (b) leaves
    assert pages.get("c", "b", "e") is None
    assert pages.get("c", "a", "e") == b"1234" and pages.get("c", "c", "e") == b"1234"
    pages.put("c", "huge", "e", b"x" * 11)
    assert pages.get("c", "huge", "e") is None
    assert pages.get("c", "a", "e") == b"1234"


def test_a_batch_is_kept_by_its_content() -> None:
    """A batch is found only under the DUMP it was rendered from, for its own campaign and
    id; entries beyond the budget leave."""
    fragments = Fragments()
    fragments.put("c", "b1", b"dump-1", b"one")
    assert fragments.get("c", "b1", b"dump-1") == b"one"
    assert fragments.get("c", "b1", b"dump-2") is None  # the batch changed
    assert (
        fragments.get("c", "b2", b"dump-1") is None and fragments.get("d", "b1", b"dump-1") is None
    )
    small = Fragments(max_bytes=2 * KEY_BYTES + 10)
    small.put("c", "b1", b"x", b"12345678")
    small.put("c", "b2", b"y", b"12345678")  # over budget: b1 leaves
    assert small.get("c", "b1", b"x") is None and small.get("c", "b2", b"y") == b"12345678"
