"""Prometheus metrics of the worker and the reconciliation job."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "dialer_stats_events_total",
    "Input messages by outcome (applied, replayed, stale, dead_lettered, tombstone).",
    ["outcome"],
)
DEAD_LETTERS = Counter(
    "dialer_stats_dead_letters_total", "Messages sent to the dead-letter topic.", ["reason"]
)
APPLY_SECONDS = Histogram(
    "dialer_stats_apply_seconds",
    "Time to apply one fetched batch to Redis.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH_SIZE = Histogram(
    "dialer_stats_batch_messages",
    "Messages per fetched batch.",
    buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000),
)
CONSUMER_LAG = Gauge(
    "dialer_stats_consumer_lag", "Messages behind the partition's end.", ["topic", "partition"]
)
EPOCHS = Counter(
    "dialer_stats_partition_epochs_total",
    "New incarnations detected for a partition (wiped or recreated topic).",
)
RECONCILE_RUNS = Counter(
    "dialer_stats_reconcile_runs_total", "Reconciliation runs by result.", ["result"]
)
RECONCILE_DRIFT = Counter(
    "dialer_stats_reconcile_drift_total",
    "Real differences found by reconciliation (entities and counter fields, judged at a "
    "consistent cut: events the worker had not applied yet are not drift).",
)
RECONCILE_DRIFT_BY_KIND = Counter(
    "dialer_stats_reconcile_drift_by_kind_total",
    "Real drift found by reconciliation, by kind: missing / stale (the source has a newer "
    "version than the stats), extra (the stats have what the source lacks), field (a "
    "counter), invalid_document (a database document that failed validation).",
    ["kind"],
)
RECONCILE_FIXED = Counter(
    "dialer_stats_reconcile_fixed_total", "Differences repaired by reconciliation."
)
TOMBSTONES = Counter(
    "dialer_stats_tombstones_total",
    "Records with a null value (compaction tombstones): not events, skipped.",
    ["topic"],
)
ABORTED_RECORDS = Counter(
    "dialer_stats_aborted_records_total",
    "Records of aborted transactions skipped by the reader.",
    ["topic"],
)
DECODE_FAILURES = Counter(
    "dialer_stats_decode_failures_total",
    "Fetches that met a batch they could not decode (missing codec, corrupt data, bad CRC); "
    "each retry counts.",
    ["topic"],
)
PARTITION_STUCK = Gauge(
    "dialer_stats_partition_stuck",
    "1 while the partition is stopped before a batch it cannot decode (retried with backoff).",
    ["topic", "partition"],
)
