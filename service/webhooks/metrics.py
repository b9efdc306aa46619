"""Prometheus metrics of webhook delivery: attempts by outcome, and the outbox by state.

The counter is kept by each worker process (summed across workers by the multiprocess
collector). The outbox gauge is read from the database at scrape time, so every worker
reports the same figures and a dead letter stays visible until someone retries it.
"""

from __future__ import annotations

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from ledger.notify.outbox import counts_by_state
from service.web.db_metrics import exposition

DELIVERIES = Counter(
    "prov_webhook_deliveries_total",
    "Webhook POSTs by outcome: delivered (2xx), failed (to be retried), dead (the last "
    "attempt failed and the delivery is dead-lettered).",
    ["outcome"],
)
OUTCOMES = ("delivered", "failed", "dead")
for _outcome in OUTCOMES:  # every series from the start, so rates have a baseline
    DELIVERIES.labels(_outcome)


class OutboxCollector(Collector):
    """`prov_webhook_outbox{state}`: outbox rows per state, counted when scraped."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> list[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "prov_webhook_outbox",
            "Webhook deliveries in the outbox by state (pending, delivered, dead).",
            labels=["state"],
        )
        with self._engine.connect() as connection:
            counts = counts_by_state(connection)
        for state, count in counts.items():
            gauge.add_metric([state], count)
        return [gauge]


def outbox_exposition(engine: Engine) -> bytes:
    """The outbox gauge in Prometheus text format; empty when the database does not answer,
    so that /metrics still reports everything else."""
    return exposition(OutboxCollector(engine), "outbox")
