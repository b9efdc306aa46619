"""Prometheus metrics of monitors, read from the database when `/metrics` is scraped.

- `prov_monitor_value{tenant,monitor,group}`: each group's latest value, the sample the
  sequencer wrote for the last batch that moved it (`monitor_samples`). At most
  `MAX_SERIES` series, the first in (tenant, monitor, group) order, so that a monitor
  grouped by subject cannot flood the scraper; `prov_monitor_series_dropped` says how many
  were left out.
- `prov_monitor_breaches_total{tenant,monitor,state}`: breach records by state
  (`breached`, `cleared`), counted from `monitor_breaches`. It only grows, as a counter
  does, since breach records are never removed.

Like the webhook outbox gauge, the figures come from the database, so every worker reports
the same ones; a database that does not answer leaves them out and /metrics still serves
the rest.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, and_, func, select

from ledger.storage.schema import monitor_breaches, monitor_samples
from service.web.db_metrics import exposition

MAX_SERIES = 1000


def latest_values(
    connection: Connection, limit: int
) -> tuple[list[tuple[str, str, str, str]], int]:
    """(tenant, monitor, group, value) of each group's newest sample, at most `limit` of
    them, and how many groups there are in all."""
    groups = select(
        monitor_samples.c.tenant,
        monitor_samples.c.monitor_id,
        monitor_samples.c.group_key,
        func.max(monitor_samples.c.idx).label("idx"),
    ).group_by(monitor_samples.c.tenant, monitor_samples.c.monitor_id, monitor_samples.c.group_key)
    total = int(
        connection.execute(select(func.count()).select_from(groups.subquery())).scalar_one()
    )
    newest = (
        groups.order_by(
            monitor_samples.c.tenant, monitor_samples.c.monitor_id, monitor_samples.c.group_key
        )
        .limit(limit)
        .subquery()
    )
    rows = connection.execute(
        select(
            monitor_samples.c.tenant,
            monitor_samples.c.monitor_id,
            monitor_samples.c.group_key,
            monitor_samples.c.value,
        )
        .join(
            newest,
            and_(
                monitor_samples.c.tenant == newest.c.tenant,
                monitor_samples.c.monitor_id == newest.c.monitor_id,
                monitor_samples.c.group_key == newest.c.group_key,
                monitor_samples.c.idx == newest.c.idx,
            ),
        )
        .order_by(
            monitor_samples.c.tenant, monitor_samples.c.monitor_id, monitor_samples.c.group_key
        )
    ).all()
    return [(r.tenant, r.monitor_id, r.group_key, r.value) for r in rows], total


def breach_counts(connection: Connection) -> list[tuple[str, str, str, int]]:
    rows = connection.execute(
        select(
            monitor_breaches.c.tenant,
            monitor_breaches.c.monitor_id,
            monitor_breaches.c.state,
            func.count().label("n"),
        )
        .group_by(
            monitor_breaches.c.tenant, monitor_breaches.c.monitor_id, monitor_breaches.c.state
        )
        .order_by(
            monitor_breaches.c.tenant, monitor_breaches.c.monitor_id, monitor_breaches.c.state
        )
    ).all()
    return [(r.tenant, r.monitor_id, r.state, int(r.n)) for r in rows]


class MonitorCollector(Collector):
    """The monitor gauges and the breach counter, read when scraped."""

    def __init__(self, engine: Engine, max_series: int = MAX_SERIES) -> None:
        self._engine = engine
        self._max_series = max_series

    def collect(self) -> list[Metric]:
        values = GaugeMetricFamily(
            "prov_monitor_value",
            "A monitor's latest value per group (the share, sum or count in its window).",
            labels=["tenant", "monitor", "group"],
        )
        dropped = GaugeMetricFamily(
            "prov_monitor_series_dropped",
            "Monitor groups left out of prov_monitor_value, over its limit of series.",
        )
        breaches = CounterMetricFamily(
            "prov_monitor_breaches",
            "Breach records by monitor and state (breached, cleared).",
            labels=["tenant", "monitor", "state"],
        )
        with self._engine.connect() as connection:
            latest, total = latest_values(connection, self._max_series)
            counts = breach_counts(connection)
        for tenant, monitor, group, value in latest:
            values.add_metric([tenant, monitor, group], float(value))
        dropped.add_metric([], max(0, total - len(latest)))
        for tenant, monitor, state, count in counts:
            breaches.add_metric([tenant, monitor, state], count)
        return [values, dropped, breaches]


def monitor_exposition(engine: Engine) -> bytes:
    """The monitor metrics in Prometheus text format; empty when the database does not
    answer."""
    return exposition(MonitorCollector(engine), "monitor")
