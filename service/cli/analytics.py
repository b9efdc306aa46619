"""`prov export`, `prov export verify`, `prov sql` and `prov report`: analytics over Parquet.

`export` writes the log to a directory or object-storage URI, carrying on from the last
export there; `export verify` checks such a location offline against a trusted verifier
key; `sql` and `report` query it with DuckDB. The location defaults to
`PROV_EXPORT_DIR`.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, TypeVar

import click
import duckdb
import msgspec
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from rich.console import Console
from rich.table import Table

from ledger.errors import BadRequest, LedgerError, NoteError
from ledger.log.note import NoteVerifier
from query.analytics.reports import (
    BUCKETS,
    DEFAULT_BY,
    DIMENSIONS,
    REPORTS,
    ReportQuery,
    parse_window,
    run_report,
)
from query.analytics.views import connect, run_sql
from query.export.exporter import export_ledger
from query.export.manifest import ManifestError
from query.export.paths import Location, open_location
from query.export.rows import ExportError
from query.export.verify import verify_export
from query.export.writer import FileLimits
from service.cli.common import Failed, emit, ledger_options, open_ledger, settings_from_env
from service.cli.times import TIME, TIME_HELP
from service.settings import Settings

EXPORT_DIR_ENV = "PROV_EXPORT_DIR"
_json = msgspec.json.Encoder()
F = TypeVar("F", bound=Callable[..., Any])


def _location(uri: str | None) -> Location:
    if not uri:
        raise click.UsageError(f"name the export location with --dir (or {EXPORT_DIR_ENV})")
    # Only an s3:// location needs the settings (PROV_S3_*): an offline check of a local
    # export is never stopped by an unrelated bad setting.
    s3 = settings_from_env().s3_options() if uri.startswith("s3://") else None
    try:
        return open_location(uri, s3=s3)
    except ValueError as error:
        raise Failed(str(error)) from None


def _location_option(name: str) -> Callable[[F], F]:
    return click.option(
        name,
        "uri",
        metavar="DIR|URI",
        envvar=EXPORT_DIR_ENV,
        help=f"Export location: a directory or a pyarrow filesystem URI [{EXPORT_DIR_ENV}]",
    )


@click.group("export", invoke_without_command=True)
@_location_option("--out")
@click.option(
    "--max-file-mb",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="Start a new file once one passes this size",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=os.cpu_count() or 1,
    show_default="cores",
    help="Processes for a large export",
)
@ledger_options
def export(settings: Settings, uri: str | None, max_file_mb: int, workers: int) -> None:
    """Export the log to Parquet at --out, carrying on from the last export there.

    Prints what was exported as JSON: the index range, the files and rows per table.
    """
    if click.get_current_context().invoked_subcommand is not None:
        return
    if not uri:
        raise click.UsageError(f"name the export location with --out (or {EXPORT_DIR_ENV})")
    location = _location(uri)
    ledger = open_ledger(settings)
    try:
        result = export_ledger(
            ledger, location, limits=FileLimits(max_file_bytes=max_file_mb << 20), workers=workers
        )
    except (ExportError, ManifestError, NoteError) as error:
        raise Failed(f"export: {error}") from None
    except ValueError as error:  # an amount beyond decimal(38, 12)
        raise Failed(f"export: {error}") from None
    except OSError as error:  # the location refused or did not answer (S3 credentials)
        raise Failed(f"export: {uri}: {error}") from None
    finally:
        ledger.close()
    emit(result.to_json())


@export.command("verify")
@click.argument("uri", metavar="DIR|URI")
@click.option(
    "--verifier-key",
    required=True,
    help="The ledger's note verifier key, as `prov checkpoint --verifier-key` prints it",
)
def export_verify(uri: str, verifier_key: str) -> None:
    """Check every file, row, leaf and root of the export at DIR against the signed
    checkpoints in its manifests; exit 1 naming the first fault."""
    try:
        verifier = NoteVerifier.parse(verifier_key)
    except NoteError as error:
        raise Failed(f"--verifier-key: {error}") from None
    try:
        report = verify_export(_location(uri), verifier)
    except OSError as error:  # the location refused or did not answer (S3 credentials)
        raise Failed(f"export verify: {uri}: {error}") from None
    if not report:
        raise Failed(f"export verify: {report.fault}")
    emit(report.to_json())


@click.command("sql")
@click.argument("query")
@_location_option("--dir")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "parquet"]),
    default="table",
    show_default=True,
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file (required for parquet)",
)
def sql(query: str, uri: str | None, fmt: str, output: Path | None) -> None:
    """Run QUERY with DuckDB over the exported views: decisions, dependencies,
    context_changes, steps, tool_calls, exposures, replays, other_records, blobs and
    envelopes."""
    if fmt == "parquet" and output is None:
        raise click.UsageError("--format parquet needs --output FILE")
    try:
        with _connect(_location(uri)) as connection:
            result = run_sql(connection, query)
    except duckdb.Error as error:
        raise Failed(f"sql: {_first_line(error)}") from None
    if fmt == "parquet":
        pq.write_table(result, output)
        return
    with _opened(output) as sink:
        if fmt == "table":
            _print_table(sink, None, result)
        elif fmt == "csv":
            _write_csv(sink, result)
        else:
            for row in result.to_pylist():
                plain = {name: _plain(value) for name, value in row.items()}
                sink.write(_json.encode(plain).decode() + "\n")


@click.command("report")
@click.argument("name", type=click.Choice(list(REPORTS)))
@_location_option("--dir")
@click.option("--tenant", help="Only this tenant's decisions (default: all)")
@click.option(
    "--since", type=TIME, help=f"Decisions that occurred at or after this time ({TIME_HELP})"
)
@click.option("--until", type=TIME, help="Decisions that occurred before this time")
@click.option("--service")
@click.option("--decision-type")
@click.option("--bucket", type=click.Choice(BUCKETS), default="day", show_default=True)
@click.option(
    "--by",
    default=",".join(DEFAULT_BY),
    show_default=True,
    help=f"cost: the columns to group by, comma-separated, of {','.join(DIMENSIONS)}",
)
@click.option("--window", default="24h", show_default=True, help="exposure: 90s, 30m, 24h, 7d")
@click.option(
    "--at", type=TIME, help="freshness: expired by this time (default: now; not supersession)"
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option(
    "--chart",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw the report's chart to this .png or .svg file",
)
def report(
    *,
    name: str,
    uri: str | None,
    tenant: str | None,
    since: datetime | None,
    until: datetime | None,
    service: str | None,
    decision_type: str | None,
    bucket: str,
    by: str,
    window: str,
    at: datetime | None,
    limit: int,
    fmt: str,
    chart: Path | None,
) -> None:
    """Run the report NAME over the export: cost, drift, latency, exposure or freshness."""
    chart_format = None if chart is None else chart.suffix.lower().lstrip(".")
    if chart_format not in (None, "png", "svg"):
        raise click.UsageError("--chart must name a .png or .svg file")
    try:
        query = ReportQuery(
            since=since,
            until=until,
            service=service,
            decision_type=decision_type,
            bucket=bucket,
            by=tuple(part.strip() for part in by.split(",") if part.strip()),
            window=parse_window(window),
            at=at,
            limit=limit,
        )
        with _connect(_location(uri), tenant) as connection:
            result = run_report(connection, name, query)
    except BadRequest as error:
        raise Failed(f"report: {error.detail}") from None
    except duckdb.Error as error:
        raise Failed(f"report: {_first_line(error)}") from None
    if chart is not None:
        # matplotlib takes longer to import than most commands take to run: only here.
        from query.analytics.charts import render_chart  # noqa: PLC0415

        chart.write_bytes(render_chart(result, "png" if chart_format == "png" else "svg"))
    if fmt == "json":
        emit(_plain(result.to_json()))
        return
    out = sys.stdout
    for position, section in enumerate(result.sections):
        if fmt == "table":
            _print_table(out, section.title, section.table)
        else:
            out.write(("\n" if position else "") + f"# {section.title}\n")
            _write_csv(out, section.table)


def _connect(location: Location, tenant: str | None = None) -> duckdb.DuckDBPyConnection:
    try:
        return connect(location, tenant=tenant)
    except (LedgerError, ManifestError) as error:
        raise Failed(str(error)) from None


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


@contextmanager
def _opened(path: Path | None) -> Iterator[IO[str]]:
    """stdout, or the file at `path`, closed afterwards."""
    if path is None:
        yield sys.stdout
        return
    with path.open("w", newline="") as file:
        yield file


def _plain(value: Any) -> Any:
    """A value as JSON and CSV show it: bytes in hex, exact decimals without padding."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _decimal(value: Decimal) -> str:
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _text(value: Any) -> str:
    """A cell for the terminal and CSV."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, datetime | date):
        return value.isoformat()
    plain = _plain(value)
    return plain if isinstance(plain, str) else str(plain)


def _rows(table: Any) -> Iterable[list[str]]:
    for row in table.to_pylist():
        yield [_text(value) for value in row.values()]


def _print_table(out: IO[str], title: str | None, table: Any) -> None:
    view = Table(title=title, title_justify="left")
    numeric = {
        field.name
        for field in table.schema
        if str(field.type).startswith(("int", "uint", "double", "float", "decimal"))
    }
    for column in table.column_names:
        view.add_column(column, justify="right" if column in numeric else "left", overflow="fold")
    for cells in _rows(table):
        view.add_row(*cells)
    # Piped output gets the table at its natural width, not folded into 80 columns.
    Console(file=out, soft_wrap=False, width=None if out.isatty() else 10_000).print(view)


def _write_csv(out: IO[str], table: Any) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.column_names)
    writer.writerows(_rows(table))


COMMANDS = (export, sql, report)
