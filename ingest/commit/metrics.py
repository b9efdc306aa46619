"""Prometheus metrics of the write path: what was appended, what was refused and why, and
how group commit batches and how long its commits take."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# `_created` timestamps double every series and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

RECORDS_APPENDED = Counter(
    "prov_records_appended_total",
    "Records answered with a receipt; status is created, or existing for a retry.",
    ["status"],
)
RECORDS_REJECTED = Counter(
    "prov_records_rejected_total", "Records refused, by problem kind.", ["reason"]
)
COMMIT_BATCH_RECORDS = Histogram(
    "prov_commit_batch_records",
    "Records per group-commit transaction.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
COMMIT_SECONDS = Histogram(
    "prov_commit_seconds",
    "Time to append one group-commit batch, from the lock to the commit.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
QUEUE_RECORDS = Gauge(
    "prov_queue_records",
    "Records accepted by a worker and not yet answered.",
    multiprocess_mode="livesum",
)
