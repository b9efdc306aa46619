"""Metrics read from the database when `/metrics` is scraped, so every worker reports the
same figures: one rule for all of them, that a database which does not answer leaves its
metrics out and /metrics still serves the rest."""

from __future__ import annotations

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

log = structlog.get_logger("prov.metrics")


def exposition(collector: Collector, what: str) -> bytes:
    """`collector`'s metrics in Prometheus text format; empty when the database does not
    answer (`what` names them in the warning)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        return generate_latest(registry)
    except Exception as error:  # the database is down: the other metrics still matter
        log.warning(f"{what} metrics unavailable", error=type(error).__name__)
        return b""
