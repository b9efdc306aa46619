"""Witnessing in /metrics: this process's requests to witnesses and its publications
(counters), and, read from the database when scraped, each witness's newest cosigned size,
how far it trails the log and how old its cosignature is (the same figures on every worker)."""

from __future__ import annotations

import time

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from ledger.log.store import latest_checkpoint
from ledger.witness.cosigned import witness_progress
from service.web.db_metrics import exposition

WITNESS_REQUESTS = Counter(
    "prov_witness_requests_total",
    "add-checkpoint requests to each witness, by outcome (cosigned, conflict: the witness "
    "held another size; refused: a 4xx/5xx or an answer that does not verify; unreachable).",
    ["witness", "outcome"],
)
PUBLICATIONS = Counter(
    "prov_checkpoint_publications_total",
    "Checkpoints written to the append-only publication target, by outcome.",
    ["outcome"],
)


class WitnessCollector(Collector):
    def __init__(self, engine: Engine, witnesses: list[str]) -> None:
        self._engine = engine
        self._witnesses = witnesses

    def collect(self) -> list[GaugeMetricFamily]:
        size = GaugeMetricFamily(
            "prov_witness_cosigned_size",
            "The tree size of the newest checkpoint each witness cosigned (0: none yet).",
            labels=["witness"],
        )
        lag = GaugeMetricFamily(
            "prov_witness_lag_entries",
            "How many entries the log holds beyond each witness's newest cosigned checkpoint.",
            labels=["witness"],
        )
        age = GaugeMetricFamily(
            "prov_witness_cosignature_age_seconds",
            "Seconds since each witness's newest cosignature (by the witness's own timestamp).",
            labels=["witness"],
        )
        with self._engine.connect() as connection:
            progress = {p.witness: p for p in witness_progress(connection)}
            latest = latest_checkpoint(connection)
        log_size = 0 if latest is None else latest.tree_size
        now = time.time()
        for name in self._witnesses:
            found = progress.get(name)
            cosigned = 0 if found is None else found.tree_size
            size.add_metric([name], cosigned)
            lag.add_metric([name], log_size - cosigned)
            if found is not None:
                age.add_metric([name], max(0.0, now - found.cosigned_s))
        return [size, lag, age]


def witness_exposition(engine: Engine, witnesses: list[str]) -> bytes:
    if not witnesses:
        return b""
    return exposition(WitnessCollector(engine, witnesses), "witness")
