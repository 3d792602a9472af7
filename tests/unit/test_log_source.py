"""The reconciliation log source facing held partitions (no broker: the holds are set up
the way the patched fetcher records them)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer.subscription_state import SubscriptionState

from processors import UndecodableLog, fetching
from processors.reconcile.source import DECODE_ATTEMPTS, MARKER_WAIT_SECONDS, KafkaLogSource

TP = TopicPartition("dialer.contacts", 3)


def consumer_holding(hold: fetching.Hold) -> Any:
    subscription = SubscriptionState()
    subscription.assign_from_user({TP})
    fetching._HOLDS[subscription.subscription.assignment] = {TP: hold}
    return SimpleNamespace(_subscription=subscription)


def hold(*, undecodable: bool, retries: int = 0, age: float = 0.0) -> fetching.Hold:
    reason = "UnsupportedCodecError: snappy" if undecodable else "waiting for the marker"
    return fetching.Hold(
        TP.topic, TP.partition, 42, reason, undecodable, time.time() - age, retries
    )


async def test_an_undecodable_batch_fails_the_read_after_its_attempts() -> None:
    """Retried first (the fetcher backs off), then the read fails naming where and why."""
    stop: dict[Any, int] = {TP: 100}
    for retries in range(DECODE_ATTEMPTS - 1):
        retried = consumer_holding(hold(undecodable=True, retries=retries))
        KafkaLogSource._check_holds(retried, {TP}, stop)
    with pytest.raises(
        UndecodableLog, match=r"dialer\.contacts\[3\]: the batch at offset 42 .*snappy"
    ):
        KafkaLogSource._check_holds(
            consumer_holding(hold(undecodable=True, retries=DECODE_ATTEMPTS - 1)), {TP}, stop
        )
    assert stop == {TP: 100}


async def test_a_transaction_left_open_ends_the_read_of_its_partition_there() -> None:
    """Waiting for a marker is normal for a while; after MARKER_WAIT_SECONDS the partition
    is read up to the open transaction only."""
    stop: dict[Any, int] = {TP: 100}
    KafkaLogSource._check_holds(consumer_holding(hold(undecodable=False, age=1)), {TP}, stop)
    assert stop == {TP: 100}
    old = hold(undecodable=False, age=MARKER_WAIT_SECONDS + 1)
    KafkaLogSource._check_holds(consumer_holding(old), {TP}, stop)
    assert stop == {TP: 42}


async def test_partitions_already_read_are_not_judged() -> None:
    """A hold on a partition the read is done with changes nothing."""
    stop: dict[Any, int] = {}
    bad = hold(undecodable=True, retries=DECODE_ATTEMPTS)
    KafkaLogSource._check_holds(consumer_holding(bad), set(), stop)
    assert stop == {}
