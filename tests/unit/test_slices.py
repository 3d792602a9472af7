"""The APPLY_SLICE encoding: exact microsecond scores, the batch prefix, events last."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from processors.domain.batchstate import unpack_batch
from processors.domain.events import BatchUpserted
from processors.domain.times import epoch_us
from processors.store.lua import FIELD_SEP
from processors.store.slices import Slice, encode

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def base36(n: int) -> str:
    digits = ""
    while n:
        n, r = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + digits
    return digits or "0"


# the zones ISO-8601 can write: fixed offsets
OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))


@given(st.datetimes(datetime(1700, 1, 1), datetime(2250, 1, 1), timezones=OFFSETS))
def test_epoch_us_is_exact_in_any_zone_and_in_a_double(moment: datetime) -> None:
    """The score is the instant to the microsecond, and a double holds it exactly."""
    score = epoch_us(moment)
    assert EPOCH + timedelta(microseconds=score) == moment
    assert int(float(score)) == score


def test_epoch_us_normalises_zones_and_takes_naive_times_as_utc() -> None:
    utc = datetime(2026, 5, 1, 8, 0, 0, 1, tzinfo=UTC)
    east = datetime(2026, 5, 1, 10, 0, 0, 1, tzinfo=timezone(timedelta(hours=2)))
    assert epoch_us(utc) == epoch_us(east) == epoch_us(utc.replace(tzinfo=None))
    assert epoch_us(utc) == 1_777_622_400_000_001


def test_a_batch_event_carries_its_microsecond_score() -> None:
    created = datetime(2026, 5, 1, 10, 0, 0, 7, tzinfo=timezone(timedelta(hours=2)))
    event = BatchUpserted(
        event_id="e", organization_id="org", campaign_id="cmp", version=1,
        occurred_at=created, batch_id="btc_1", status="pending", total_contacts=3,
        created_at=created,
    )  # fmt: skip
    _, argv = encode(Slice("cmp", [("t", 0, 5, event)]), {("t", 0): 1})
    assert argv[:3] == ["1", "t:0", "1"]
    fields = argv[3].split(FIELD_SEP)
    # created_at travels as its score alone: the stored state shows it from that
    assert fields[9:11] == ["", "1777622400000007"]
    assert unpack_batch("a|1|3|" + base36(1777622400000007) + "|||")["created_at"] == (
        "2026-05-01T08:00:00.000007Z"
    )
