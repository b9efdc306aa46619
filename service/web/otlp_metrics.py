"""`prov_otlp_traces_waiting{state}`: traces in the span store by state (`open`, `busy`,
`done`, `failed`), counted from the database when scraped; the counters of OTLP ingest are
in `ingest.otlp.metrics`."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from ingest.otlp.store import pending
from service.web.db_metrics import exposition


class OtlpTraceCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> list[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "prov_otlp_traces_waiting",
            "Traces the OTLP receiver holds, by state (open: waiting for spans; busy: being "
            "assembled; done and failed: remembered to refuse late spans).",
            labels=["state"],
        )
        for state, count in sorted(pending(self._engine).items()):
            gauge.add_metric([state], count)
        return [gauge]


def otlp_exposition(engine: Engine) -> bytes:
    return exposition(OtlpTraceCollector(engine), "OTLP")
