"""DuckDB over an export: one view per exported table, over the files the manifests list.

Views read only files that a manifest lists, never a glob, so a file left by an
interrupted export (or put there by anyone else) is never counted. Each view leads with
the partition columns `tenant` and `date`, then the table's own columns. A local export
is read by DuckDB's own Parquet reader; any other filesystem through a pyarrow dataset,
which DuckDB scans with the same projection and filter pushdown.

With `tenant`, the views hold only that tenant's partitions: the HTTP reports are scoped
this way, so no report query can reach another tenant's rows.

Every view has the columns of the current format (`query.export.schema.TABLES`), whatever
format the export was written in: a table an older export lacks is empty, and a column
its files lack is null (`prov.export/v1` has no `dependencies` or `context_changes`, and
no `decisions.trace_id` or `conversation_id`).
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.dataset as pads  # type: ignore[import-untyped]

from ledger.errors import NotFound
from query.export.manifest import read_history
from query.export.paths import Location, parse_data_path
from query.export.schema import PARTITION, TABLES, tables_of, with_partition

_COLUMNS = "tenant, date, * EXCLUDE (tenant, date)"


def exported_files(location: Location, tenant: str | None = None) -> dict[str, list[str]]:
    """The data files of every export at the location, by table; NotFound if none."""
    return {name: [path for path, _ in listed] for name, listed in _files(location, tenant).items()}


def _files(location: Location, tenant: str | None) -> dict[str, list[tuple[str, str]]]:
    """(path, format) of every data file, by table."""
    history = read_history(location)
    if not history:
        raise NotFound(f"nothing has been exported to {location.uri}; run `prov export`")
    files: dict[str, list[tuple[str, str]]] = {name: [] for name in TABLES}
    for stored in history:
        for exported in stored.manifest.files:
            if tenant is None or parse_data_path(exported.path).tenant == tenant:
                files[exported.table].append((exported.path, stored.manifest.format))
    return files


def connect(
    location: Location, *, tenant: str | None = None, threads: int | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per exported table (`decisions`,
    `dependencies`, `context_changes`, `steps`, `tool_calls`, `exposures`, `replays`,
    `other_records`, `blobs`, `envelopes`)."""
    files = _files(location, tenant)
    connection = duckdb.connect(":memory:")
    # Days and weeks start at midnight UTC, whatever the machine's zone.
    connection.execute("SET TimeZone = 'UTC'")
    if threads is not None:
        connection.execute(f"SET threads = {int(threads)}")
    for name, paths in files.items():
        _create_view(connection, location, name, paths)
    return connection


def _create_view(
    connection: duckdb.DuckDBPyConnection,
    location: Location,
    name: str,
    listed_files: list[tuple[str, str]],
) -> None:
    paths = [path for path, _ in listed_files]
    if paths and location.local:
        # The Python API of read_parquet takes no hive_types; DuckDB's SQL does.
        listed = ", ".join(_literal(location.path(path)) for path in paths)
        columns, options = _COLUMNS, ""
        formats = {fmt for _, fmt in listed_files}
        held = {field.name for fmt in formats for field in tables_of(fmt).get(name, TABLES[name])}
        if len(formats) > 1 or len(held) < len(TABLES[name]):
            # Files of an older format lack columns: by name, and null where no file has one.
            options = ", union_by_name = true"
            columns = ", ".join(
                [
                    "tenant",
                    "date",
                    *(
                        field.name if field.name in held else f"NULL::VARCHAR AS {field.name}"
                        for field in TABLES[name]
                    ),
                ]
            )
        connection.execute(
            f"CREATE VIEW {name} AS SELECT {columns} FROM read_parquet([{listed}], "
            f"hive_partitioning = true, hive_types = {{'tenant': 'VARCHAR', 'date': 'DATE'}}"
            f"{options})"
        )
        return
    if paths:
        source = pads.dataset(
            [location.path(path) for path in paths],
            schema=with_partition(name),
            format="parquet",
            filesystem=location.fs,
            partitioning=pads.partitioning(PARTITION, flavor="hive"),
            partition_base_dir=location.path(name),
        )
    else:
        source = with_partition(name).empty_table()
    connection.from_arrow(source).project(_COLUMNS).create_view(name)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def run_sql(connection: duckdb.DuckDBPyConnection, sql: str, **parameters: Any) -> Any:
    """The result of one SQL statement as an Arrow table (empty for one that returns none)."""
    relation = connection.sql(sql, params=parameters or None)
    if relation is None:
        return pa.table({})
    return relation.to_arrow_table()
