"""Parquet export to `s3://bucket/prefix` on a real S3 server (SeaweedFS on loopback), as a
user runs it: `prov export`, `prov export verify` reading everything back from S3, DuckDB
queries (`prov sql`) over the objects, and the reports endpoint of a running `prov serve`,
all reaching S3 through the same `PROV_S3_*` settings as the blob store.

DuckDB reads the objects through pyarrow's S3 filesystem (`query.analytics.views`), so no
DuckDB extension has to be downloaded.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
import msgspec
import pyarrow.fs as pafs  # type: ignore[import-untyped]
import pytest
from click.testing import CliRunner, Result

from ledger.ledger import Ledger
from ledger.storage.db import make_engine
from service.cli.analytics import export, sql
from tests.conftest import TEST_ORIGIN
from tests.http_server import prepared_server
from tests.s3_server import SeaweedFS
from tests.test_export_helpers import fill, ledger_totals


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger.init(make_engine(str(tmp_path / "l.db")), tmp_path / "l.key", TEST_ORIGIN)
    fill(ledger, 45, seed=31)
    return ledger


def ledger_args(tmp_path: Path) -> list[str]:
    return ["--db", str(tmp_path / "l.db"), "--key-file", str(tmp_path / "l.key")]


def run(seaweedfs: SeaweedFS, command: object, args: list[str], **env: str | None) -> Result:
    runner = CliRunner(env={"PROV_EXPORT_DIR": None, **seaweedfs.env(), **env})
    return runner.invoke(command, args)  # type: ignore[arg-type]


def objects(seaweedfs: SeaweedFS, url: str) -> list[str]:
    base = url.removeprefix("s3://")
    selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    return sorted(
        info.path.removeprefix(base + "/")
        for info in seaweedfs.filesystem().get_file_info(selector)
        if info.type == pafs.FileType.File
    )


def count_and_cost(seaweedfs: SeaweedFS, url: str) -> dict[str, str]:
    query = "SELECT count(*) AS n, sum(cost) AS cost FROM decisions"
    answer = run(seaweedfs, sql, [query, "--dir", url, "--format", "csv"])
    assert answer.exit_code == 0, answer.stderr
    [row] = list(csv.DictReader(io.StringIO(answer.stdout)))
    return row


def test_an_export_to_s3_verifies_from_s3_and_answers_queries(
    ledger: Ledger, tmp_path: Path, seaweedfs: SeaweedFS
) -> None:
    url = seaweedfs.fresh_url("export")
    done = run(seaweedfs, export, ["--out", url, *ledger_args(tmp_path)])
    assert done.exit_code == 0, done.stderr
    summary = msgspec.json.decode(done.stdout)
    assert (summary["status"], summary["start"], summary["end"]) == ("exported", 0, 45)
    stored = objects(seaweedfs, url)
    assert "manifests/export-000001.json" in stored
    assert any(name.startswith("decisions/tenant=acme/date=") for name in stored)

    again = run(seaweedfs, export, ["--out", url, *ledger_args(tmp_path)])
    assert msgspec.json.decode(again.stdout) == {"status": "up-to-date", "end": 45}

    verifier = ledger.verifier.encode()
    checked = run(seaweedfs, export, ["verify", url, "--verifier-key", verifier])
    assert checked.exit_code == 0, checked.stderr
    assert msgspec.json.decode(checked.stdout)["verified"] is True

    totals = ledger_totals(ledger.engine)["acme"]
    row = count_and_cost(seaweedfs, url)
    assert row == {"n": "45", "cost": f"{totals.cost.normalize():f}"}

    # Incremental: the next export carries on where the last one stopped.
    fill(ledger, 5, seed=32)
    more = run(seaweedfs, export, ["--out", url, *ledger_args(tmp_path)])
    assert msgspec.json.decode(more.stdout)["start"] == 45
    assert run(seaweedfs, export, ["verify", url, "--verifier-key", verifier]).exit_code == 0
    assert count_and_cost(seaweedfs, url)["n"] == "50"

    # What verify checks is what S3 holds: a part replaced there is named.
    part = next(name for name in objects(seaweedfs, url) if name.startswith("decisions/"))
    other = next(name for name in objects(seaweedfs, url) if name.startswith("steps/"))
    filesystem = seaweedfs.filesystem()
    base = url.removeprefix("s3://")
    with filesystem.open_input_stream(f"{base}/{other}") as stream:
        foreign = stream.read()
    with filesystem.open_output_stream(f"{base}/{part}") as stream:
        stream.write(foreign)
    tampered = run(seaweedfs, export, ["verify", url, "--verifier-key", verifier])
    assert tampered.exit_code == 1
    assert tampered.stderr.startswith("prov: export verify: ")
    assert part in tampered.stderr


def test_an_export_with_the_wrong_s3_secret_fails_in_one_line(
    ledger: Ledger, tmp_path: Path, seaweedfs: SeaweedFS
) -> None:
    url = seaweedfs.fresh_url("denied")
    denied = run(
        seaweedfs,
        export,
        ["--out", url, *ledger_args(tmp_path)],
        PROV_S3_SECRET_ACCESS_KEY="not-the-secret",  # noqa: S106
    )
    assert denied.exit_code == 1, denied.output
    [line] = denied.stderr.splitlines()
    assert line.startswith(f"prov: export: {url}: "), line
    assert objects(seaweedfs, url) == []


def test_the_reports_endpoint_reads_an_s3_export(
    ledger: Ledger, tmp_path: Path, seaweedfs: SeaweedFS
) -> None:
    url = seaweedfs.fresh_url("reports")
    assert run(seaweedfs, export, ["--out", url, *ledger_args(tmp_path)]).exit_code == 0
    # The server's own ledger is another one: the reports read only the export.
    (tmp_path / "serve").mkdir()
    server = prepared_server(
        str(tmp_path / "serve" / "l.db"), tmp_path / "serve", PROV_EXPORT_DIR=url, **seaweedfs.env()
    )
    server.start()
    try:
        answer = httpx.get(
            f"{server.url}/v1/reports/cost",
            params={"by": "tenant,service"},
            headers=server.auth(server.api_key("audit")),
            timeout=30,
        )
    finally:
        server.stop()
    assert answer.status_code == 200, answer.text
    [_, totals, *_] = answer.json()["sections"]
    assert {row[0] for row in totals["rows"]} == {"acme"}
    assert sum(row[3] for row in totals["rows"]) == 45
