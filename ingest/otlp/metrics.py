"""Prometheus metrics of OTLP ingest, kept by each worker process.

- `prov_otlp_items_total{signal,outcome}`: spans and logged events received, by whether
  they were stored or rejected (bad ids, no span named, their trace already assembled).
- `prov_otlp_traces_total{outcome}`: traces the assembler finished: `complete`,
  `incomplete` (closed after the grace period without their root) or `failed` (a decision
  refused; the reason is logged and kept in `otlp_traces.note`).
- `prov_otlp_decisions_total`: decisions appended from spans.

How many traces wait in each state is read from the database at scrape time
(`service.web.otlp_metrics`).
"""

from __future__ import annotations

from prometheus_client import Counter

ITEMS = Counter(
    "prov_otlp_items_total",
    "OTLP spans and logged events received, by signal (spans, logs) and outcome.",
    ["signal", "outcome"],
)
TRACES = Counter(
    "prov_otlp_traces_total",
    "Traces assembled into decisions, by outcome (complete, incomplete, failed).",
    ["outcome"],
)
DECISIONS = Counter("prov_otlp_decisions_total", "Decisions appended from OTLP spans.")

for _signal in ("spans", "logs"):  # every series from the start, so rates have a baseline
    for _outcome in ("stored", "rejected"):
        ITEMS.labels(_signal, _outcome)
for _outcome in ("complete", "incomplete", "failed"):
    TRACES.labels(_outcome)
