"""The analytics commands (`export`, `export verify`, `sql`, `report`) as a user runs them,
through click, on a SQLite ledger; and each bad input as one `prov: ...` line."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import msgspec
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from click.testing import CliRunner, Result

from ledger.ledger import Ledger
from ledger.storage.db import make_engine
from service.cli.analytics import export, report, sql
from tests.conftest import TEST_ORIGIN
from tests.test_export_helpers import fill, ledger_totals


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Ledger, list[str], Path]:
    ledger = Ledger.init(make_engine(str(tmp_path / "l.db")), tmp_path / "l.key", TEST_ORIGIN)
    fill(ledger, 45, seed=31)
    return ledger, ["--db", str(tmp_path / "l.db"), "--key-file", str(tmp_path / "l.key")], tmp_path


def run(command: object, args: list[str]) -> Result:
    return CliRunner(env={"PROV_EXPORT_DIR": None}).invoke(command, args)  # type: ignore[arg-type]


def one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("prov: "), line
    for fragment in fragments:
        assert fragment in line, line


def test_export_verify_query_and_report(setup: tuple[Ledger, list[str], Path]) -> None:
    ledger, db, tmp_path = setup
    out = str(tmp_path / "exports")
    done = run(export, ["--out", out, *db])
    assert done.exit_code == 0, done.stderr
    summary = msgspec.json.decode(done.stdout)
    assert (summary["status"], summary["start"], summary["end"]) == ("exported", 0, 45)
    again = run(export, ["--out", out, *db])
    assert msgspec.json.decode(again.stdout) == {"status": "up-to-date", "end": 45}

    checked = run(export, ["verify", out, "--verifier-key", ledger.verifier.encode()])
    assert checked.exit_code == 0, checked.stderr
    assert msgspec.json.decode(checked.stdout)["verified"] is True

    query = "SELECT tenant, count(*) AS n, sum(cost) AS cost FROM decisions GROUP BY tenant"
    as_csv = run(sql, [query, "--dir", out, "--format", "csv"])
    assert as_csv.exit_code == 0, as_csv.stderr
    [row] = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    totals = ledger_totals(ledger.engine)["acme"]
    assert row["n"] == "45"
    assert row["cost"] == f"{totals.cost.normalize():f}"
    as_json = run(sql, [query, "--dir", out, "--format", "json"])
    assert msgspec.json.decode(as_json.stdout.splitlines()[0])["n"] == 45
    as_table = run(sql, [query, "--dir", out])
    assert "acme" in as_table.stdout
    assert "45" in as_table.stdout
    parquet = tmp_path / "result.parquet"
    run(sql, [query, "--dir", out, "--format", "parquet", "--output", str(parquet)])
    assert pq.read_table(parquet).column("n").to_pylist() == [45]

    chart = tmp_path / "cost.png"
    drawn = run(report, ["cost", "--dir", out, "--chart", str(chart)])
    assert drawn.exit_code == 0, drawn.stderr
    assert "Cost per day" in drawn.stdout
    assert chart.read_bytes().startswith(b"\x89PNG")
    for name in ("drift", "latency", "exposure", "freshness"):
        result = run(report, [name, "--dir", out, "--format", "json", "--window", "1h"])
        assert result.exit_code == 0, result.stderr
        assert msgspec.json.decode(result.stdout)["report"] == name
    as_csv = run(report, ["freshness", "--dir", out, "--format", "csv", "--at", "2000-01-01"])
    assert as_csv.stdout.startswith("# Expired decisions per service\n")


@pytest.mark.parametrize(
    ("command", "args", "fragments"),
    [
        (sql, ["SELEC nonsense"], ["sql:", "syntax error"]),
        (sql, ["SELECT * FROM nowhere"], ["sql:", "nowhere"]),
        (report, ["cost", "--bucket", "day", "--by", "tenant,colour"], ["report:", "colour"]),
        (report, ["exposure", "--window", "soon"], ["report:", "window"]),
        (export, ["verify", "{out}", "--verifier-key", "not-a-key"], ["--verifier-key"]),
        (export, ["verify", "{empty}", "--verifier-key", "{key}"], ["no export manifest"]),
        (sql, ["SELECT 1", "--dir", "{empty}"], ["nothing has been exported"]),
        (export, ["--out", "nosuchscheme://x", "{db}"], ["nosuchscheme"]),
    ],
)
def test_bad_input_is_one_line(
    setup: tuple[Ledger, list[str], Path],
    command: object,
    args: list[str],
    fragments: list[str],
) -> None:
    ledger, db, tmp_path = setup
    out = str(tmp_path / "exports")
    assert run(export, ["--out", out, *db]).exit_code == 0
    values = {"out": out, "empty": str(tmp_path / "empty"), "key": ledger.verifier.encode()}
    expanded: list[str] = []
    for arg in args:
        if arg == "{db}":
            expanded += db
        else:
            expanded.append(arg.format(**values))
    if command is not export and "--dir" not in expanded:
        expanded += ["--dir", out]
    one_line_error(run(command, expanded), *fragments)


def test_a_missing_location_is_a_usage_error(setup: tuple[Ledger, list[str], Path]) -> None:
    _, db, _ = setup
    result = run(export, db)
    assert result.exit_code == 2
    assert "--out" in result.stderr
