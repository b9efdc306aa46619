"""The canned reports, as DuckDB queries over an export's views.

- `cost`: decisions, tokens and cost by tenant, service, decision type and model (or
  subject and trace), per day, week or month, and in total; then decision economics:
  - cost per decision (average, p50, p95) by tenant, service, model, subject and trace;
  - cost per unit of exposure decided, per service, decision type, currency and exposure
    unit, over the decisions that carry both a cost and exposures;
  - replay models cheaper per decision than the recorded model, with how many of their
    replays reproduced the decision identically (verdict `identical`).
  Amounts are summed per currency, never across currencies.
- `drift`: the share of each model and prompt version per day; and, at each version
  change, how the distribution of every low-cardinality output field moved from the
  previous version to the new one (with the total variation distance per field).
- `latency`: p50, p95 and p99 of decision latency and tokens, and of step durations.
- `exposure`: for each exposure group, the largest sum of its exposures within any
  sliding window, and the share of all exposure in that unit it held at that moment;
  the `limit` largest groups per unit.
- `freshness`: decisions whose `freshness.valid_until` has passed, and those that were
  already stale when they were made; the dependencies that context changes superseded,
  recomputed from the exported records by the ledger's rule (`ledger.indexes.freshness`),
  an independent check of its stale marks; and pairs of decisions of one trace or
  conversation that relied on different versions of a context key.

Every report takes the same filters (time range on `occurred_at`, service, decision
type) as bound parameters; names of columns and periods come from fixed lists. A report
is a list of sections, each an Arrow table and the chart that draws it (`query.analytics.charts`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import duckdb

from ledger.errors import BadRequest, NotFound
from query.analytics.views import run_sql
from query.audit.search import check_text

BUCKETS = ("day", "week", "month")
DIMENSIONS = {
    "tenant": "tenant",
    "service": "service",
    "decision_type": "decision_type",
    "model": "model_name AS model",
    "subject": "subject",
    "trace": "trace_id AS trace",
}
DEFAULT_BY = ("tenant", "service", "decision_type", "model")
# The dimensions of the cost-per-decision sections; subject and trace, which a decision
# may lack and which have as many values as there are customers or requests, are listed
# without the decisions that lack them and at most `limit` rows per currency.
PER_DECISION_BY = ("tenant", "service", "model", "subject", "trace")
_OPTIONAL = {"subject": "subject", "trace": "trace_id"}
OUTPUT_FIELD_VALUES = 20  # an output field with more distinct values is not a category


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """The parameters of a report; each report uses those that apply to it."""

    since: datetime | None = None
    until: datetime | None = None
    service: str | None = None
    decision_type: str | None = None
    bucket: str = "day"
    by: tuple[str, ...] = DEFAULT_BY
    window: timedelta = timedelta(hours=24)
    at: datetime | None = None
    limit: int = 50

    def __post_init__(self) -> None:
        if self.bucket not in BUCKETS:
            raise BadRequest(f"bucket must be one of {', '.join(BUCKETS)}", pointer="/bucket")
        unknown = [name for name in self.by if name not in DIMENSIONS]
        if unknown or not self.by or len(set(self.by)) != len(self.by):
            raise BadRequest(
                f"by takes one or more of {', '.join(DIMENSIONS)}, each once, "
                f"not {','.join(self.by)[:80]!r}",
                pointer="/by",
            )
        if not timedelta(0) < self.window <= MAX_WINDOW:
            raise BadRequest(f"the window must be from 1s to {MAX_WINDOW.days}d", pointer="/window")
        for name in ("service", "decision_type"):
            value = getattr(self, name)
            if value is not None:
                check_text(name, value)
        if not 1 <= self.limit <= 10_000:
            raise BadRequest("limit must be between 1 and 10000", pointer="/limit")


@dataclass(frozen=True, slots=True)
class Chart:
    """How to draw a section: `line` plots `y` over `x`, one line per `series` value;
    `bar` draws one group of bars per row, labelled by the `x` columns."""

    kind: Literal["line", "bar"]
    x: tuple[str, ...]
    y: tuple[str, ...]
    series: tuple[str, ...] = ()
    ylabel: str = ""


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    table: Any  # pyarrow.Table
    chart: Chart | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "columns": self.table.column_names,
            "rows": [list(row.values()) for row in self.table.to_pylist()],
        }


@dataclass(frozen=True, slots=True)
class Report:
    name: str
    title: str
    sections: list[Section] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "report": self.name,
            "title": self.title,
            "sections": [section.to_json() for section in self.sections],
        }


def _filters(query: ReportQuery) -> tuple[str, dict[str, Any]]:
    """The WHERE clause over `decisions` and its parameters."""
    clauses, parameters = ["TRUE"], {}
    for name, column, operator in (
        ("since", "occurred_at", ">="),
        ("until", "occurred_at", "<"),
        ("service", "service", "="),
        ("decision_type", "decision_type", "="),
    ):
        value = getattr(query, name)
        if value is not None:
            clauses.append(f"{column} {operator} ${name}")
            parameters[name] = value
    return " AND ".join(clauses), parameters


def cost(connection: duckdb.DuckDBPyConnection, query: ReportQuery) -> Report:
    where, parameters = _filters(query)
    dimensions = ", ".join(DIMENSIONS[name] for name in query.by)
    measures = (
        "cost_currency AS currency, count(*) AS decisions, "
        "sum(input_tokens)::BIGINT AS input_tokens, sum(output_tokens)::BIGINT AS output_tokens, "
        "sum(cost) AS cost"
    )
    over_time = run_sql(
        connection,
        f"SELECT date_trunc('{query.bucket}', occurred_at)::DATE AS period, {dimensions}, "
        f"{measures} FROM decisions WHERE {where} GROUP BY ALL ORDER BY period, cost DESC",
        **parameters,
    )
    totals = run_sql(
        connection,
        f"SELECT {dimensions}, {measures} FROM decisions WHERE {where} "
        "GROUP BY ALL ORDER BY cost DESC NULLS LAST",
        **parameters,
    )
    return Report(
        "cost",
        f"Cost per {query.bucket}",
        [
            Section(
                f"Cost per {query.bucket}",
                over_time,
                Chart("line", ("period",), ("cost",), (*query.by, "currency"), "cost"),
            ),
            Section("Totals", totals),
            *_economics(connection, query, where, parameters),
        ],
    )


# Cost per decision by one dimension, over the decisions that carry a cost, per currency.
# Quantiles interpolate linearly, in DOUBLE; totals stay exact decimals.
_PER_DECISION = """
WITH priced AS (
    SELECT {dimension}, cost_currency AS currency, count(*) AS decisions, sum(cost) AS cost,
           avg(cost) AS cost_per_decision,
           quantile_cont(cost::DOUBLE, 0.5) AS cost_per_decision_p50,
           quantile_cont(cost::DOUBLE, 0.95) AS cost_per_decision_p95
    FROM decisions
    WHERE {where} AND cost IS NOT NULL AND cost_currency IS NOT NULL{present}
    GROUP BY ALL
)
SELECT * FROM priced
{limited}
ORDER BY currency, cost DESC, {name}
"""

# Cost against the exposure decided: each decision's exposures summed per unit first, so a
# decision's cost counts once per unit however many exposures of that unit it carries.
_PER_EXPOSURE = """
WITH exposed AS (
    SELECT tenant, idx, unit, sum(amount) AS amount FROM exposures GROUP BY ALL
)
SELECT d.service, d.decision_type, d.cost_currency AS currency, e.unit,
       count(*) AS decisions, sum(d.cost) AS cost, sum(e.amount) AS exposure,
       sum(d.cost) / nullif(sum(e.amount), 0) AS cost_per_unit
FROM (SELECT * FROM decisions WHERE {where}) d
JOIN exposed e ON e.tenant = d.tenant AND e.idx = d.idx
WHERE d.cost IS NOT NULL AND d.cost_currency IS NOT NULL
GROUP BY ALL
ORDER BY d.service, d.decision_type, currency, e.unit
"""

# Replays by another model than the recorded one (a deterministic replay runs no model),
# joined to the decision they replay by its entry's leaf hash. `cost_before` and
# `cost_after` are summed over the replays priced on both sides (`priced`), in the
# currency of the replay's diff; a model is listed when its cost per decision is lower.
_CHEAPER_MODELS = """
WITH replayed AS (
    SELECT d.decision_type, r.recorded_model_name AS recorded_model,
           r.model_name AS replay_model, r.cost_currency AS currency, r.verdict,
           r.cost_before IS NOT NULL AND r.cost_after IS NOT NULL AS priced,
           r.cost_before, r.cost_after
    FROM replays r
    JOIN (SELECT tenant, leaf_hash, decision_type FROM decisions WHERE {where}) d
      ON d.tenant = r.tenant AND d.leaf_hash = r.replay_of_leaf
    WHERE r.mode <> 'deterministic' AND r.model_name <> r.recorded_model_name
),
per_model AS (
    SELECT decision_type, recorded_model, replay_model, currency, count(*) AS replays,
           count(*) FILTER (WHERE verdict = 'identical') AS identical,
           count(*) FILTER (WHERE priced) AS priced,
           sum(cost_before) FILTER (WHERE priced) AS cost_before,
           sum(cost_after) FILTER (WHERE priced) AS cost_after
    FROM replayed WHERE currency IS NOT NULL GROUP BY ALL
)
SELECT decision_type, recorded_model, replay_model, currency, replays, identical,
       identical / replays AS share_identical, priced, cost_before, cost_after,
       cost_before / priced AS cost_per_decision_before,
       cost_after / priced AS cost_per_decision_after
FROM per_model
WHERE priced > 0 AND cost_after < cost_before
ORDER BY share_identical DESC, decision_type, recorded_model, replay_model, currency
"""


def _economics(
    connection: duckdb.DuckDBPyConnection,
    query: ReportQuery,
    where: str,
    parameters: dict[str, Any],
) -> list[Section]:
    """The decision-economics sections of the cost report, over the decisions `where`
    chooses (`_filters`)."""
    sections = []
    for name in PER_DECISION_BY:
        column = _OPTIONAL.get(name)
        sql = _PER_DECISION.format(
            dimension=DIMENSIONS[name],
            where=where,
            present="" if column is None else f" AND {column} IS NOT NULL",
            limited=""
            if column is None
            else "QUALIFY row_number() OVER (PARTITION BY currency "
            f"ORDER BY cost DESC, {name}) <= {query.limit}",
            name=name,
        )
        title = f"Cost per decision by {name}"
        if column is not None:
            title += f" (the {query.limit} costliest per currency)"
        chart = None
        if name == "model":
            chart = Chart(
                "bar",
                ("model", "currency"),
                ("cost_per_decision_p50", "cost_per_decision", "cost_per_decision_p95"),
                ylabel="cost per decision",
            )
        sections.append(Section(title, run_sql(connection, sql, **parameters), chart))
    sections.append(
        Section(
            "Cost per unit of exposure decided",
            run_sql(connection, _PER_EXPOSURE.format(where=where), **parameters),
            Chart(
                "bar",
                ("service", "decision_type", "currency", "unit"),
                ("cost_per_unit",),
                ylabel="cost per unit of exposure",
            ),
        )
    )
    sections.append(
        Section(
            "Cheaper models and how often they replay identically",
            run_sql(connection, _CHEAPER_MODELS.format(where=where), **parameters),
            Chart(
                "bar",
                ("decision_type", "replay_model", "currency"),
                ("share_identical",),
                ylabel="share of replays identical",
            ),
        )
    )
    return sections


_VERSIONS = """
versions AS (
    SELECT service, decision_type, 'model' AS dimension,
           model_name || ' ' || model_version AS version, occurred_at, output
    FROM decisions WHERE {where}
    UNION ALL
    SELECT service, decision_type, 'prompt', prompt_template || ' ' || prompt_version,
           occurred_at, output
    FROM decisions WHERE {where} AND prompt_version IS NOT NULL
)"""

_SHARES = """
WITH {versions},
daily AS (
    SELECT date_trunc('day', occurred_at)::DATE AS day, service, decision_type, dimension,
           version, count(*) AS decisions
    FROM versions GROUP BY ALL
)
SELECT *, decisions / sum(decisions) OVER (PARTITION BY day, service, decision_type, dimension)
          AS share
FROM daily ORDER BY ALL
"""

# Each version after a slice's first is a change from the one before it (by first use);
# the output distributions of the two versions are compared field by field.
_OUTPUT_SHIFT = """
WITH {versions},
changes AS (
    SELECT service, decision_type, dimension, version, first_seen,
           lag(version) OVER (PARTITION BY service, decision_type, dimension
                              ORDER BY first_seen, version) AS previous
    FROM (SELECT service, decision_type, dimension, version, min(occurred_at) AS first_seen
          FROM versions GROUP BY ALL)
),
fields AS (
    SELECT service, decision_type, dimension, version, key AS field,
           coalesce(output ->> key, 'null') AS value
    FROM versions, unnest(json_keys(output)) AS keys(key)
    WHERE json_type(output -> key) NOT IN ('OBJECT', 'ARRAY')
),
counts AS (
    SELECT service, decision_type, dimension, version, field, value, count(*) AS n
    FROM fields GROUP BY ALL
),
shares AS (
    SELECT *, n / sum(n) OVER (PARTITION BY service, decision_type, dimension, version, field)
              AS share
    FROM counts
),
pairs AS (
    SELECT c.service, c.decision_type, c.dimension, c.previous, c.version,
           c.first_seen AS changed_at, s.field, s.value,
           sum(CASE WHEN s.version = c.previous THEN s.share ELSE 0 END) AS share_before,
           sum(CASE WHEN s.version = c.version THEN s.share ELSE 0 END) AS share_after
    FROM changes c JOIN shares s USING (service, decision_type, dimension)
    WHERE c.previous IS NOT NULL AND s.version IN (c.previous, c.version)
    GROUP BY ALL
)
SELECT *, share_after - share_before AS delta,
       0.5 * sum(abs(share_after - share_before))
           OVER (PARTITION BY service, decision_type, dimension, previous, version, field)
           AS distance
FROM pairs
QUALIFY count(*) OVER (PARTITION BY service, decision_type, dimension, previous, version, field)
        <= {values}
ORDER BY distance DESC, abs(delta) DESC, service, decision_type, dimension, version,
         field, value
LIMIT {limit}
"""


def drift(connection: duckdb.DuckDBPyConnection, query: ReportQuery) -> Report:
    where, parameters = _filters(query)
    versions = _VERSIONS.format(where=where)
    return Report(
        "drift",
        "Model and prompt version drift",
        [
            Section(
                "Share of each version per day",
                run_sql(connection, _SHARES.format(versions=versions), **parameters),
                Chart("line", ("day",), ("share",), ("dimension", "service", "version"), "share"),
            ),
            Section(
                "Output distribution before and after each version change",
                run_sql(
                    connection,
                    _OUTPUT_SHIFT.format(
                        versions=versions, values=OUTPUT_FIELD_VALUES, limit=query.limit
                    ),
                    **parameters,
                ),
            ),
        ],
    )


def _quantiles(column: str, name: str) -> str:
    return ", ".join(
        f"quantile_cont({column}, {q}) AS {name}_p{label}"
        for q, label in ((0.5, 50), (0.95, 95), (0.99, 99))
    )


def latency(connection: duckdb.DuckDBPyConnection, query: ReportQuery) -> Report:
    where, parameters = _filters(query)
    decisions = run_sql(
        connection,
        "SELECT service, decision_type, model_name AS model, count(*) AS decisions, "
        f"{_quantiles('latency_ms', 'latency_ms')}, {_quantiles('input_tokens', 'input_tokens')}, "
        f"{_quantiles('output_tokens', 'output_tokens')} "
        f"FROM decisions WHERE {where} GROUP BY ALL ORDER BY ALL",
        **parameters,
    )
    duration = "(epoch_us(ended_at) - epoch_us(started_at)) / 1000.0"
    steps = run_sql(
        connection,
        f"SELECT kind, label, count(*) AS steps, {_quantiles(duration, 'duration_ms')}, "
        "count(error_type) AS errors "
        f"FROM steps WHERE idx IN (SELECT idx FROM decisions WHERE {where}) "
        "GROUP BY ALL ORDER BY ALL",
        **parameters,
    )
    return Report(
        "latency",
        "Latency and token distributions",
        [
            Section(
                "Per decision",
                decisions,
                Chart(
                    "bar",
                    ("service", "decision_type"),
                    ("latency_ms_p50", "latency_ms_p95", "latency_ms_p99"),
                    ylabel="latency (ms)",
                ),
            ),
            Section(
                "Per step",
                steps,
                Chart(
                    "bar",
                    ("kind", "label"),
                    ("duration_ms_p50", "duration_ms_p95", "duration_ms_p99"),
                    ylabel="duration (ms)",
                ),
            ),
        ],
    )


_EXPOSURE = """
WITH windows AS (
    SELECT unit, group_name, occurred_at, amount,
           sum(amount) OVER by_group AS group_window,
           count(*) OVER by_group AS group_count,
           sum(amount) OVER by_unit AS unit_window
    FROM exposures
    WHERE idx IN (SELECT idx FROM decisions WHERE {where})
    WINDOW by_group AS (PARTITION BY unit, group_name ORDER BY occurred_at
                        RANGE BETWEEN INTERVAL {seconds} SECONDS PRECEDING AND CURRENT ROW),
           by_unit AS (PARTITION BY unit ORDER BY occurred_at
                       RANGE BETWEEN INTERVAL {seconds} SECONDS PRECEDING AND CURRENT ROW)
)
SELECT group_name AS "group", unit,
       max(group_window) AS peak_exposure,
       arg_max(occurred_at, group_window) AS peak_window_end,
       arg_max(group_count, group_window) AS decisions_in_window,
       arg_max(group_window::DOUBLE / unit_window::DOUBLE, group_window) AS share_at_peak,
       sum(amount) AS total_exposure,
       count(*) AS decisions
FROM windows GROUP BY group_name, unit
QUALIFY row_number() OVER (PARTITION BY unit ORDER BY peak_exposure DESC, group_name) <= {limit}
ORDER BY unit, peak_exposure DESC, "group"
"""


def exposure(connection: duckdb.DuckDBPyConnection, query: ReportQuery) -> Report:
    where, parameters = _filters(query)
    seconds = int(query.window.total_seconds())
    if seconds < 1:
        raise BadRequest("the window must be at least one second", pointer="/window")
    table = run_sql(
        connection,
        _EXPOSURE.format(where=where, seconds=seconds, limit=query.limit),
        **parameters,
    )
    title = f"Exposure concentration over sliding {_duration(query.window)} windows"
    return Report(
        "exposure",
        title,
        [
            Section(
                title, table, Chart("bar", ("group", "unit"), ("share_at_peak",), ylabel="share")
            )
        ],
    )


# Every dependency (decision, key, version) a context change superseded, by the rule of
# `ledger.indexes.freshness`, from the exported `dependencies` and `context_changes` alone:
# - stale when made: the latest change of the key before the decision named another
#   version, and the decision's version was already in the log (a dependency or a change
#   naming it) before that change;
# - otherwise, the first later change of the key that names another version.
# A change's run is its stretch of consecutive changes of the key to one version; the first
# change of the next run is the first later change to name another version. ASOF joins keep
# this one sorted pass per key, however many changes a key has.
_SUPERSEDED = """
CREATE OR REPLACE TEMP TABLE _superseded AS
WITH ordered AS (
    SELECT tenant, idx, key, version,
           lag(version) OVER (PARTITION BY tenant, key ORDER BY idx) AS previous
    FROM context_changes
),
numbered AS (
    SELECT tenant, idx, key, version,
           sum(CASE WHEN version IS DISTINCT FROM previous THEN 1 ELSE 0 END)
               OVER (PARTITION BY tenant, key ORDER BY idx) AS run
    FROM ordered
),
runs AS (SELECT tenant, key, run, min(idx) AS first_idx FROM numbered GROUP BY ALL),
changes AS (
    SELECT n.tenant, n.idx, n.key, n.version, r.first_idx AS next_other
    FROM numbered n
    LEFT JOIN runs r ON r.tenant = n.tenant AND r.key = n.key AND r.run = n.run + 1
),
named AS (
    SELECT tenant, key, version, min(idx) AS first_idx
    FROM (SELECT tenant, key, version, idx FROM dependencies
          UNION ALL
          SELECT tenant, key, version, idx FROM context_changes)
    GROUP BY ALL
),
at_birth AS (
    SELECT d.tenant, d.idx, d.key, d.version, c.idx AS change_idx
    FROM dependencies d
    ASOF JOIN changes c ON c.tenant = d.tenant AND c.key = d.key AND d.idx > c.idx
    JOIN named n ON n.tenant = d.tenant AND n.key = d.key AND n.version = d.version
    WHERE c.version <> d.version AND n.first_idx < c.idx
),
later AS (
    SELECT d.tenant, d.idx, d.key, d.version,
           CASE WHEN c.version <> d.version THEN c.idx ELSE c.next_other END AS change_idx
    FROM dependencies d
    ASOF JOIN changes c ON c.tenant = d.tenant AND c.key = d.key AND d.idx < c.idx
)
SELECT * FROM at_birth
UNION ALL
SELECT * FROM later
WHERE change_idx IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM at_birth b
                  WHERE b.idx = later.idx AND b.key = later.key AND b.version = later.version)
"""

_SUPERSEDED_ROWS = """
SELECT m.tenant, m.idx, d.record_id, d.service, d.decision_type, d.occurred_at, m.key,
       m.version, m.change_idx, c.record_id AS change_id, c.version AS change_version,
       c.changed_at, m.change_idx < m.idx AS stale_when_made
FROM _superseded m
JOIN (SELECT * FROM decisions WHERE {where}) d ON d.tenant = m.tenant AND d.idx = m.idx
JOIN context_changes c ON c.tenant = m.tenant AND c.idx = m.change_idx
ORDER BY m.idx, m.key, m.version
LIMIT {limit}
"""

_SUPERSEDED_PER_KEY = """
SELECT m.tenant, m.key, count(*) AS superseded, count(DISTINCT m.idx) AS decisions,
       count(DISTINCT m.change_idx) AS changes,
       count(*) FILTER (WHERE m.change_idx < m.idx) AS stale_when_made
FROM _superseded m
JOIN (SELECT tenant, idx FROM decisions WHERE {where}) d ON d.tenant = m.tenant AND d.idx = m.idx
GROUP BY ALL ORDER BY superseded DESC, m.tenant, m.key
"""

# Two decisions of one thread (`trace:<links.trace_id>` or `conversation:<id>`, as the
# ledger names them) that relied on different versions of one key; listed once, the older
# first, when either of them passes the filters.
_INCONSISTENT = """
WITH threads AS (
    SELECT tenant, idx, record_id, 'trace:' || trace_id AS thread
    FROM decisions WHERE trace_id IS NOT NULL
    UNION ALL
    SELECT tenant, idx, record_id, 'conversation:' || conversation_id
    FROM decisions WHERE conversation_id IS NOT NULL
),
chosen AS (SELECT idx FROM decisions WHERE {where})
SELECT a.tenant, a.thread, da.key, a.idx AS first_idx, a.record_id AS first_id,
       da.version AS first_version, b.idx AS second_idx, b.record_id AS second_id,
       db.version AS second_version
FROM threads a
JOIN threads b ON b.tenant = a.tenant AND b.thread = a.thread AND b.idx > a.idx
JOIN dependencies da ON da.tenant = a.tenant AND da.idx = a.idx
JOIN dependencies db
  ON db.tenant = b.tenant AND db.idx = b.idx AND db.key = da.key AND db.version <> da.version
WHERE a.idx IN (SELECT idx FROM chosen) OR b.idx IN (SELECT idx FROM chosen)
ORDER BY first_idx, second_idx, da.key, a.thread, first_version, second_version
LIMIT {limit}
"""


def freshness(connection: duckdb.DuckDBPyConnection, query: ReportQuery) -> Report:
    where, parameters = _filters(query)
    parameters["at"] = query.at or datetime.now(UTC)
    summary = run_sql(
        connection,
        "SELECT service, decision_type, count(*) AS decisions, "
        "count(valid_until) AS with_expiry, "
        "count(*) FILTER (WHERE valid_until <= $at) AS expired, "
        "count(*) FILTER (WHERE valid_until <= occurred_at) AS stale_when_made, "
        "min(valid_until) FILTER (WHERE valid_until <= $at) AS oldest_expiry "
        f"FROM decisions WHERE {where} GROUP BY ALL ORDER BY expired DESC, service, decision_type",
        **parameters,
    )
    expired = run_sql(
        connection,
        "SELECT record_id, service, decision_type, occurred_at, valid_until, "
        "epoch($at) - epoch(valid_until) AS expired_seconds, "
        "valid_until <= occurred_at AS stale_when_made "
        f"FROM decisions WHERE {where} AND valid_until <= $at "
        f"ORDER BY valid_until DESC, idx LIMIT {query.limit}",
        **parameters,
    )
    filtered = {name: value for name, value in parameters.items() if name != "at"}
    connection.execute(_SUPERSEDED)
    try:
        superseded = run_sql(
            connection, _SUPERSEDED_ROWS.format(where=where, limit=query.limit), **filtered
        )
        per_key = run_sql(connection, _SUPERSEDED_PER_KEY.format(where=where), **filtered)
    finally:
        connection.execute("DROP TABLE IF EXISTS _superseded")
    inconsistent = run_sql(
        connection, _INCONSISTENT.format(where=where, limit=query.limit), **filtered
    )
    moment = parameters["at"].isoformat()
    return Report(
        "freshness",
        f"Decisions whose freshness ran out by {moment}, or that context changes superseded",
        [
            Section(
                "Expired decisions per service",
                summary,
                Chart(
                    "bar",
                    ("service", "decision_type"),
                    ("expired", "decisions"),
                    ylabel="decisions",
                ),
            ),
            Section(f"Most recently expired (at most {query.limit})", expired),
            Section(f"Superseded by context changes (at most {query.limit})", superseded),
            Section(
                "Superseded per key",
                per_key,
                Chart("bar", ("tenant", "key"), ("superseded", "decisions"), ylabel="dependencies"),
            ),
            Section(f"Inconsistent context (at most {query.limit} pairs)", inconsistent),
        ],
    )


_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}
# A century: every window a report needs, and far inside what timedelta and DuckDB hold.
MAX_WINDOW = timedelta(days=36_525)


def parse_window(text: str) -> timedelta:
    """`90s`, `30m`, `24h` or `7d` as a timedelta, up to `MAX_WINDOW`; BadRequest for
    anything else."""
    number, unit = text[:-1], text[-1:]
    # ASCII digits only (isdigit() also takes "²", which int() refuses), and few of them.
    if unit not in _UNITS or not (number.isascii() and number.isdecimal()) or len(number) > 12:
        raise BadRequest(
            f"a window is a positive count of s, m, h or d, not {text[:40]!r}", pointer="/window"
        )
    seconds = int(number) * _UNITS[unit]
    if not 1 <= seconds <= MAX_WINDOW.total_seconds():
        raise BadRequest(
            f"a window is from 1s to {MAX_WINDOW.days}d, not {text!r}", pointer="/window"
        )
    return timedelta(seconds=seconds)


def _duration(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    unit = next(unit for unit in "dhms" if seconds % _UNITS[unit] == 0)
    return f"{seconds // _UNITS[unit]}{unit}"


REPORTS: dict[str, Callable[[duckdb.DuckDBPyConnection, ReportQuery], Report]] = {
    "cost": cost,
    "drift": drift,
    "latency": latency,
    "exposure": exposure,
    "freshness": freshness,
}


def run_report(connection: duckdb.DuckDBPyConnection, name: str, query: ReportQuery) -> Report:
    build = REPORTS.get(name)
    if build is None:
        raise NotFound(f"there is no report {name!r}; reports: {', '.join(REPORTS)}")
    return build(connection, query)
