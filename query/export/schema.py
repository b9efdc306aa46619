"""The exported tables: their Arrow schemas, and rows turned into Arrow tables.

Every table is hive-partitioned by `tenant` and `date` (the UTC date the record occurred,
or was integrated if it names no time); those two columns live in the file paths, not in
the files, as Spark, Trino and DuckDB expect. Child rows (steps, tool calls, exposures,
blobs, envelopes) sit in the partition of their record, in files named like its file.

The tables with one row per log entry (`decisions`, `context_changes`, `other_records`,
`replays`) carry the integrity columns: `entry_bytes` (the log entry, whose SHA-256 with a
0x00 prefix is `leaf_hash`) and `envelope_sha256`; the `envelopes` table holds the envelope
bytes of every entry, from which every other column is derived again by `prov export verify`.

Formats. `prov.export/v2` added the `dependencies` and `context_changes` tables and the
`trace_id` and `conversation_id` columns of `decisions`; in `prov.export/v1` a context change
was an `other_records` row. An envelope gives other rows under each format, so a manifest
names its format, and verification and the views read v1 exports as v1 (`tables_of`).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]

FORMAT = "prov.export/v2"
FORMAT_V1 = "prov.export/v1"
# The formats the views and `prov export verify` read; the exporter writes `FORMAT` only.
READABLE_FORMATS = (FORMAT_V1, FORMAT)

_TIME = pa.timestamp("us", tz="UTC")
# Money is decimal(38, 12): exact to a trillionth of the unit, up to 10**26.
MONEY_SCALE = 12
_MONEY = pa.decimal128(38, MONEY_SCALE)
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
_MONEY_LIMIT = Decimal(10) ** (38 - MONEY_SCALE)
_WIDE = Context(prec=60)
_HASH = pa.binary(32)
_JSON = pa.json_(pa.string())

PARTITION = pa.schema([pa.field("tenant", pa.string()), pa.field("date", pa.date32())])

TABLES: dict[str, Any] = {
    "decisions": pa.schema(
        [
            pa.field("idx", pa.int64(), nullable=False),
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("service", pa.string(), nullable=False),
            pa.field("decision_type", pa.string(), nullable=False),
            pa.field("occurred_at", _TIME, nullable=False),
            pa.field("integrated_at", _TIME, nullable=False),
            pa.field("model_provider", pa.string(), nullable=False),
            pa.field("model_name", pa.string(), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
            pa.field("prompt_template", pa.string()),
            pa.field("prompt_version", pa.string()),
            pa.field("input_tokens", pa.int64()),
            pa.field("output_tokens", pa.int64()),
            pa.field("cost", _MONEY),
            pa.field("cost_currency", pa.string()),
            pa.field("latency_ms", pa.int64()),
            pa.field("output", _JSON, nullable=False),
            pa.field("subject", pa.string()),
            pa.field("root_delegator", pa.string()),
            pa.field("policy_id", pa.string()),
            pa.field("policy_version", pa.string()),
            pa.field("policy_result", pa.string()),
            pa.field("valid_until", _TIME),
            # The threads `ledger.indexes.freshness.threads_of` puts the decision in: its
            # `links.trace_id`, and the conversation id of its attributes.
            pa.field("trace_id", pa.string()),
            pa.field("conversation_id", pa.string()),
            pa.field("leaf_hash", _HASH, nullable=False),
            pa.field("envelope_sha256", _HASH, nullable=False),
            pa.field("entry_bytes", pa.binary(), nullable=False),
        ]
    ),
    # One row per (decision, key, version) the decision relied on, as the ledger's dependency
    # index counts them (`ledger.indexes.freshness.decision_freshness`): `freshness.depends_on`
    # first, then the context snapshots (the snapshot's name is the key); `source` says which
    # named it first. `occurred_at` is the decision's.
    "dependencies": pa.schema(
        [
            pa.field("idx", pa.int64(), nullable=False),
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("key", pa.string(), nullable=False),
            pa.field("version", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("occurred_at", _TIME, nullable=False),
        ]
    ),
    # One row per context-change record (application/vnd.prov.context-change.v1+json),
    # partitioned by the day of `changed_at`.
    "context_changes": pa.schema(
        [
            pa.field("idx", pa.int64(), nullable=False),
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("service", pa.string(), nullable=False),
            pa.field("key", pa.string(), nullable=False),
            pa.field("version", pa.string(), nullable=False),
            pa.field("changed_at", _TIME, nullable=False),
            pa.field("integrated_at", _TIME, nullable=False),
            pa.field("reason", pa.string()),
            pa.field("leaf_hash", _HASH, nullable=False),
            pa.field("envelope_sha256", _HASH, nullable=False),
            pa.field("entry_bytes", pa.binary(), nullable=False),
        ]
    ),
    "steps": pa.schema(
        [
            pa.field("idx", pa.int64(), nullable=False),
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("step", pa.int32(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("label", pa.string(), nullable=False),
            pa.field("started_at", _TIME, nullable=False),
            pa.field("ended_at", _TIME, nullable=False),
            pa.field("input_tokens", pa.int64()),
            pa.field("output_tokens", pa.int64()),
            pa.field("cost", _MONEY),
            pa.field("cost_currency", pa.string()),
            pa.field("error_type", pa.string()),
            pa.field("finish_reason", pa.string()),
        ]
    ),
    "tool_calls": pa.schema(
        [
            pa.field("idx", pa.int64(), nullable=False),
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("step", pa.int32(), nullable=False),
            pa.field("name", pa.string(), nullable=False),
            pa.field("call_id", pa.string(), nullable=False),
            pa.field("started_at", _TIME, nullable=False),
            pa.field("ended_at", _TIME, nullable=False),
            pa.field("arguments", _JSON, nullable=False),
            pa.field("result", _JSON),
            pa.field("error_type", pa.string()),
            pa.field("error_message", pa.string()),
        ]
    ),
    "exposures": pa.schema(
        [
            pa.field("idx", pa.int64(), nullable=False),
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("position", pa.int32(), nullable=False),
            pa.field("occurred_at", _TIME, nullable=False),
            # `group` is an SQL keyword.
            pa.field("group_name", pa.string(), nullable=False),
            pa.field("amount", _MONEY, nullable=False),
            pa.field("unit", pa.string(), nullable=False),
        ]
    ),
    # One row per replay record: how re-running a decision compared with its record.
    # The usage columns are the replay's diff: `_before` the record's, `_after` the replay's.
    "replays": pa.schema(
        [
            pa.field("idx", pa.int64(), nullable=False),
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("replay_of", pa.string(), nullable=False),
            pa.field("replay_of_leaf", _HASH, nullable=False),
            pa.field("batch", pa.string()),
            pa.field("mode", pa.string(), nullable=False),
            pa.field("verdict", pa.string(), nullable=False),
            pa.field("occurred_at", _TIME, nullable=False),
            pa.field("integrated_at", _TIME, nullable=False),
            pa.field("recorded_model_provider", pa.string(), nullable=False),
            pa.field("recorded_model_name", pa.string(), nullable=False),
            pa.field("recorded_model_version", pa.string()),
            pa.field("model_provider", pa.string(), nullable=False),
            pa.field("model_name", pa.string(), nullable=False),
            pa.field("model_version", pa.string()),
            pa.field("divergence_kind", pa.string()),
            pa.field("divergence_step", pa.int32()),
            pa.field("error_type", pa.string()),
            pa.field("changed_fields", pa.list_(pa.string()), nullable=False),
            pa.field("text_changed", pa.bool_(), nullable=False),
            pa.field("tool_call_changes", pa.int32(), nullable=False),
            pa.field("input_tokens_before", pa.int64()),
            pa.field("input_tokens_after", pa.int64()),
            pa.field("output_tokens_before", pa.int64()),
            pa.field("output_tokens_after", pa.int64()),
            pa.field("cost_before", _MONEY),
            pa.field("cost_after", _MONEY),
            pa.field("cost_currency", pa.string()),
            pa.field("latency_ms_before", pa.int64()),
            pa.field("latency_ms_after", pa.int64()),
            pa.field("output", _JSON),
            pa.field("leaf_hash", _HASH, nullable=False),
            pa.field("envelope_sha256", _HASH, nullable=False),
            pa.field("entry_bytes", pa.binary(), nullable=False),
        ]
    ),
    # Every log entry that is neither a decision nor a replay (principal enrollments,
    # revocations, kinds added later), whole: the Merkle root needs every leaf, so no entry
    # is left out.
    "other_records": pa.schema(
        [
            pa.field("idx", pa.int64(), nullable=False),
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("payload_type", pa.string(), nullable=False),
            pa.field("service", pa.string()),
            pa.field("occurred_at", _TIME),
            pa.field("integrated_at", _TIME, nullable=False),
            pa.field("payload", _JSON, nullable=False),
            pa.field("leaf_hash", _HASH, nullable=False),
            pa.field("envelope_sha256", _HASH, nullable=False),
            pa.field("entry_bytes", pa.binary(), nullable=False),
        ]
    ),
    # Each blob a decision references. `status` (present, erased or missing), `size` and
    # `erased_at` are the ledger's word at export time: the signature covers the digest only.
    "blobs": pa.schema(
        [
            pa.field("idx", pa.int64(), nullable=False),
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("pointer", pa.string(), nullable=False),
            pa.field("digest", pa.string(), nullable=False),
            pa.field("status", pa.string(), nullable=False),
            pa.field("size", pa.int64()),
            pa.field("erased_at", _TIME),
        ]
    ),
    "envelopes": pa.schema(
        [
            pa.field("idx", pa.int64(), nullable=False),
            pa.field("envelope", pa.binary(), nullable=False),
        ]
    ),
}

# The columns of `blobs` that the envelope determines, and which verification checks.
BLOB_DERIVED = ("idx", "record_id", "pointer", "digest")

# What `prov.export/v2` added: whole tables, and columns of existing ones (all strings: the
# views of a v1 export fill them with NULL::VARCHAR).
ADDED_IN_V2 = ("dependencies", "context_changes")
COLUMNS_ADDED_IN_V2 = {"decisions": ("trace_id", "conversation_id")}


def _v1_tables() -> dict[str, Any]:
    tables = {}
    for name, schema in TABLES.items():
        if name in ADDED_IN_V2:
            continue
        added = COLUMNS_ADDED_IN_V2.get(name, ())
        tables[name] = pa.schema([field for field in schema if field.name not in added])
    return tables


_TABLES_OF = {FORMAT: TABLES, FORMAT_V1: _v1_tables()}


def tables_of(fmt: str) -> dict[str, Any]:
    """The tables, and their columns, of an export in format `fmt` (one of
    `READABLE_FORMATS`)."""
    return _TABLES_OF[fmt]


def to_table(name: str, rows: Sequence[tuple[Any, ...]]) -> Any:
    """An Arrow table of `rows`, whose items are in the column order of `TABLES[name]`.

    Transposing with `zip` and converting whole columns keeps the per-row cost in C.
    """
    schema = TABLES[name]
    if not rows:
        return schema.empty_table()
    columns = list(zip(*rows, strict=True))
    return pa.Table.from_arrays(
        [_array(column, field) for column, field in zip(columns, schema, strict=True)],
        schema=schema,
    )


def _array(values: Sequence[Any], field: Any) -> Any:
    kind = field.type
    if kind != _MONEY:
        return pa.array(values, type=kind)
    try:
        return pa.array(values, type=kind)
    except pa.ArrowInvalid:  # more than 12 decimal places, or too large: rare, so slow
        fit = money_or_none if field.nullable else money_clamped
        return pa.array([None if v is None else fit(v) for v in values], type=kind)


def money(amount: Decimal) -> Decimal:
    """`amount` at scale 12: exact for every amount with at most 12 decimal places, rounded
    half-even beyond; ValueError for one that does not fit in decimal(38, 12)."""
    # A wide context and `copy_abs`: the default 28 digits would round the checks themselves.
    if not amount.is_finite() or amount.adjusted() >= 38 - MONEY_SCALE:
        raise ValueError(f"the amount {amount} does not fit decimal(38, 12)")
    rounded = amount.quantize(_QUANTUM, ROUND_HALF_EVEN, _WIDE)
    if rounded.copy_abs() >= _MONEY_LIMIT:
        raise ValueError(f"the amount {amount} does not fit decimal(38, 12)")
    return rounded


def money_or_none(amount: Decimal) -> Decimal | None:
    """`money(amount)`, or null for an amount beyond decimal(38, 12): a record stored
    before admission bounded amounts still exports (the envelope keeps the amount)."""
    try:
        return money(amount)
    except ValueError:
        return None


def money_clamped(amount: Decimal) -> Decimal:
    """`money(amount)`, or the largest amount of the same sign that fits, for a column that
    cannot be null."""
    try:
        return money(amount)
    except ValueError:
        if amount.is_nan():
            return Decimal(0)
        largest = _WIDE.subtract(_MONEY_LIMIT, _QUANTUM)  # exact: 38 digits
        return largest if amount > 0 else largest.copy_negate()


def with_partition(name: str) -> Any:
    """The schema of a table as queries see it: its columns and the partition columns."""
    schema = TABLES[name]
    return pa.schema([*PARTITION, *schema])
