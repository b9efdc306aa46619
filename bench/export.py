"""Parquet export and DuckDB query speed, each beside a baseline from the same run.

1. `prov export` of a fresh ledger of demo records, in one process and with worker
   processes, in decisions/s; baseline: a plain pyarrow write of exactly the rows the
   export wrote (all tables, zstd), from memory. Then `prov export verify`.
2. The cost-by-tenant aggregate of `prov sql` over 10,000,000 decisions. The 10M-row set
   is synthesized by copying the exported `decisions` files under new tenants, with a
   manifest listing the copies (so it does not verify); the query runs through the same
   views as `prov sql`, in this process and as a whole `prov sql` process. Baseline:
   DuckDB's own `read_parquet` over a glob of the same files.
Targets: 100,000 decisions/s exported; the aggregate in at most 2 s.

    python -m bench.export [--records 100000] [--sql-rows 10000000] [--engine sqlite|postgres]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import msgspec
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from bench.common import ENGINES, engine_arguments, fresh_ledger, rate, signed_demo_records, timed
from ledger.ledger import Ledger
from query.analytics.views import connect, run_sql
from query.export.exporter import export_ledger
from query.export.manifest import ExportedFile, decode_manifest, encode_manifest
from query.export.paths import DataPath, manifest_path, open_location, parse_data_path
from query.export.verify import verify_export

APPEND_BATCH = 2_000
COST_BY_TENANT = "SELECT tenant, count(*), sum(cost) FROM decisions GROUP BY tenant"


def plain_write_baseline(exported: Path, scratch: Path) -> float:
    """Read every exported table into memory, then time writing the same rows with
    pyarrow alone: the floor under an export that must also read, check and derive."""
    tables = [pq.read_table(path) for path in sorted(exported.rglob("*.parquet"))]
    scratch.mkdir()

    def write() -> None:
        for number, table in enumerate(tables):
            pq.write_table(table, scratch / f"{number}.parquet", compression="zstd")

    return timed(write)


def export_figures(ledger: Ledger, records: int, folder: Path) -> None:
    workers = os.cpu_count() or 1
    single = open_location(str(folder / "single"))
    one = timed(lambda: export_ledger(ledger, single, workers=1))
    parallel = open_location(str(folder / "parallel"))
    many = timed(lambda: export_ledger(ledger, parallel, workers=workers, parallel_from=1))
    baseline = plain_write_baseline(folder / "single", folder / "baseline")
    verify = timed(lambda: _ok(verify_export(single, ledger.verifier)))
    size = sum(path.stat().st_size for path in (folder / "single").rglob("*.parquet"))
    print(f"  export, 1 process                          {rate(records, one)}")
    print(f"  export, {workers} processes                        {rate(records, many)}")
    print(f"  baseline: pyarrow write of the same rows   {rate(records, baseline)}")
    print(f"  export verify                              {rate(records, verify)}")
    print(
        f"  exported {size / records:,.0f} bytes/decision on disk; export / baseline = "
        f"{baseline / min(one, many):.2f}"
    )


def synthesize(source: Path, target: Path, rows: int) -> int:
    """Copies of the exported decisions files under tenants t0, t1, …, listed in one
    manifest, until at least `rows` decisions; returns how many."""
    manifest = decode_manifest((source / manifest_path(1)).read_bytes())
    originals = [f for f in manifest.files if f.table == "decisions"]
    per_copy = sum(f.rows for f in originals)
    files: list[ExportedFile] = []
    for copy in range(-(-rows // per_copy)):
        for original in originals:
            parsed = parse_data_path(original.path)
            path = str(
                DataPath(
                    "decisions",
                    f"t{copy}",
                    parsed.day,
                    manifest.sequence,
                    copy * manifest.end + parsed.first_index,
                )
            )
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / original.path, target / path)
            files.append(msgspec.structs.replace(original, path=path))
    (target / manifest_path(1)).parent.mkdir(parents=True)
    (target / manifest_path(1)).write_bytes(
        encode_manifest(msgspec.structs.replace(manifest, files=files))
    )
    return per_copy * (len(files) // len(originals))


def sql_figures(source: Path, folder: Path, rows: int) -> None:
    target = folder / "synthetic"
    total = synthesize(source, target, rows)
    location = open_location(str(target))
    run_sql(connect(location), COST_BY_TENANT)  # warm the page cache once
    in_process = min(timed(lambda: run_sql(connect(location), COST_BY_TENANT)) for _ in range(3))
    command = [
        sys.executable,
        "-c",
        "from service.cli_analytics import sql; sql.main()",
        COST_BY_TENANT,
        "--dir",
        str(target),
        "--format",
        "csv",
    ]
    whole = min(
        timed(lambda: subprocess.run(command, check=True, capture_output=True)) for _ in range(3)
    )
    glob = str(target / "decisions" / "**" / "*.parquet")
    query = COST_BY_TENANT.replace(
        "FROM decisions", f"FROM read_parquet('{glob}', hive_partitioning = true)"
    )
    plain = min(timed(lambda: duckdb.connect().sql(query).fetchall()) for _ in range(3))
    print(f"\n  cost by tenant over {total:,} synthesized decisions")
    print(f"  `prov sql` views, in process               {in_process:>10.3f} s")
    print(f"  `prov sql` as a whole process              {whole:>10.3f} s")
    print(f"  baseline: DuckDB read_parquet over a glob  {plain:>10.3f} s")


def main() -> None:
    parser = engine_arguments(__doc__ or "")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--sql-rows", type=int, default=10_000_000)
    args = parser.parse_args()
    print(f"{args.records:,} demo records ({args.content} content), {os.cpu_count()} cores")
    for engine_name in args.engine or ENGINES:
        with fresh_ledger(engine_name) as ledger, tempfile.TemporaryDirectory() as scratch:
            records = signed_demo_records(ledger, args.records, content=args.content)
            for start in range(0, len(records), APPEND_BATCH):
                ledger.append(records[start : start + APPEND_BATCH])
            print(f"\n[{engine_name}]")
            export_figures(ledger, args.records, Path(scratch))
            if engine_name == (args.engine or ENGINES)[0]:
                sql_figures(Path(scratch) / "single", Path(scratch), args.sql_rows)


def _ok(report: object) -> None:
    if not report:
        raise SystemExit(f"export verification failed: {report}")


if __name__ == "__main__":
    main()
