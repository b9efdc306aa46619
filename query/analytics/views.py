"""DuckDB over an export: one view per exported table, over the files the manifests list.

Views read only files that a manifest lists, never a glob, so a file left by an
interrupted export (or put there by anyone else) is never counted. Each view leads with
the partition columns `tenant` and `date`, then the table's own columns. A local export
is read by DuckDB's own Parquet reader; any other filesystem through a pyarrow dataset,
which DuckDB scans with the same projection and filter pushdown.

With `tenant`, the views hold only that tenant's partitions: the HTTP reports are scoped
this way, so no report query can reach another tenant's rows.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.dataset as pads  # type: ignore[import-untyped]

from ledger.errors import NotFound
from query.export.manifest import read_history
from query.export.paths import Location, parse_data_path
from query.export.schema import PARTITION, TABLES, with_partition

_COLUMNS = "tenant, date, * EXCLUDE (tenant, date)"


def exported_files(location: Location, tenant: str | None = None) -> dict[str, list[str]]:
    """The data files of every export at the location, by table; NotFound if none."""
    history = read_history(location)
    if not history:
        raise NotFound(f"nothing has been exported to {location.uri}; run `prov export`")
    files: dict[str, list[str]] = {name: [] for name in TABLES}
    for stored in history:
        for exported in stored.manifest.files:
            if tenant is None or parse_data_path(exported.path).tenant == tenant:
                files[exported.table].append(exported.path)
    return files


def connect(
    location: Location, *, tenant: str | None = None, threads: int | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per exported table (`decisions`,
    `steps`, `tool_calls`, `exposures`, `replays`, `other_records`, `blobs`, `envelopes`)."""
    files = exported_files(location, tenant)
    connection = duckdb.connect(":memory:")
    # Days and weeks start at midnight UTC, whatever the machine's zone.
    connection.execute("SET TimeZone = 'UTC'")
    if threads is not None:
        connection.execute(f"SET threads = {int(threads)}")
    for name, paths in files.items():
        _create_view(connection, location, name, paths)
    return connection


def _create_view(
    connection: duckdb.DuckDBPyConnection, location: Location, name: str, paths: list[str]
) -> None:
    if paths and location.local:
        # The Python API of read_parquet takes no hive_types; DuckDB's SQL does.
        listed = ", ".join(_literal(location.path(path)) for path in paths)
        connection.execute(
            f"CREATE VIEW {name} AS SELECT {_COLUMNS} FROM read_parquet([{listed}], "
            "hive_partitioning = true, hive_types = {'tenant': 'VARCHAR', 'date': 'DATE'})"
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
