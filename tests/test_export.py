"""The Parquet export on both engines: totals equal the ledger's, increments are exact,
erased blobs are marked, object-storage URIs and worker processes give the same export,
and a ledger whose stored bytes were altered is refused."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text

from ledger.delegation.records import PRINCIPAL_PAYLOAD_TYPE, PRINCIPAL_SERVICE, sign_record
from ledger.ledger import Ledger
from ledger.log.sequencer import now_micros
from query.analytics.views import connect, run_sql
from query.export.exporter import export_ledger
from query.export.manifest import read_history
from query.export.paths import Location, list_files, open_location
from query.export.rows import ExportError
from query.export.verify import verify_export
from query.export.writer import FileLimits
from service.demo.scenarios import demo_principals, demo_records
from service.demo.traffic import demo_signing_key, enroll_demo_principals, register_demo_keys
from tests.support import demo_envelopes
from tests.test_export_helpers import append_all, fill, ledger_totals, stored_decisions
from tests.test_tamper import disable_append_only_guards


@pytest.fixture
def out(tmp_path: Path) -> Location:
    return open_location(str(tmp_path / "exports"))


def duck_totals(location: Location) -> dict[str, tuple[int, object, int, int]]:
    table = run_sql(
        connect(location),
        "SELECT tenant, count(*), sum(cost), sum(input_tokens)::BIGINT, "
        "sum(output_tokens)::BIGINT FROM decisions GROUP BY tenant",
    )
    return {row["tenant"]: tuple(list(row.values())[1:]) for row in table.to_pylist()}


def test_duckdb_totals_equal_the_ledgers(ledger: Ledger, out: Location) -> None:
    fill(ledger, 150, seed=3)
    fill(ledger, 60, seed=4, tenant="globex")
    result = export_ledger(ledger, out)
    assert result.manifest is not None
    assert result.manifest.end == 210
    expected = {
        tenant: (t.decisions, t.cost, t.input_tokens, t.output_tokens)
        for tenant, t in ledger_totals(ledger.engine).items()
    }
    assert duck_totals(out) == expected
    assert verify_export(out, ledger.verifier)


def test_an_incremental_export_picks_up_exactly_the_new_entries(
    ledger: Ledger, out: Location
) -> None:
    fill(ledger, 40, seed=5)
    first = export_ledger(ledger, out).manifest
    assert first is not None
    assert (first.start, first.end) == (0, 40)
    fill(ledger, 25, seed=6)
    second = export_ledger(ledger, out).manifest
    assert second is not None
    assert (second.sequence, second.start, second.end) == (2, 40, 65)
    assert second.tree_before == first.tree_after
    assert second.previous is not None
    assert export_ledger(ledger, out).manifest is None  # nothing new: no third manifest
    assert len(read_history(out)) == 2

    views = connect(out)
    new = run_sql(views, "SELECT idx FROM decisions WHERE idx >= 40 ORDER BY idx")
    assert new.column("idx").to_pylist() == list(range(40, 65))
    counts = run_sql(views, "SELECT count(*) AS n, count(DISTINCT idx) AS d FROM decisions")
    assert counts.to_pylist() == [{"n": 65, "d": 65}]
    # Each export's files hold exactly its own range.
    for stored in read_history(out):
        indexes = sorted(
            index
            for exported in stored.manifest.files
            if exported.table == "decisions"
            for index in pq.read_table(out.path(exported.path)).column("idx").to_pylist()
        )
        assert indexes == list(range(stored.manifest.start, stored.manifest.end))
    steps = run_sql(views, "SELECT count(*) AS n FROM steps").to_pylist()[0]["n"]
    assert steps == sum(len(decision.steps) for _, decision in stored_decisions(ledger.engine))
    assert verify_export(out, ledger.verifier)


def test_erased_blobs_are_exported_marked_as_erased(ledger: Ledger, out: Location) -> None:
    fill(ledger, 6, seed=7)
    loans = [d for _, d in stored_decisions(ledger.engine) if d.prompt and d.prompt.messages_blob]
    # Upload the message blobs of two demo records (their bytes come with them), erase one.
    held = {record.decision.id: record.blobs for record in demo_records(6, seed=7)}
    kept, erased = loans[0], loans[1]
    for decision in (kept, erased):
        assert decision.prompt is not None
        digest = decision.prompt.messages_blob or ""
        ledger.blobs.put(
            "acme", digest, held[decision.id][digest], subject=decision.subject, now_us=now_micros()
        )
    assert erased.prompt is not None
    ledger.blobs.erase_now("acme", [erased.prompt.messages_blob or ""], now_us=now_micros())
    export_ledger(ledger, out)

    rows = run_sql(
        connect(out),
        "SELECT record_id, pointer, status, size, erased_at FROM blobs "
        "WHERE pointer = '/prompt/messages_blob'",
    ).to_pylist()
    by_id = {row["record_id"]: row for row in rows}
    assert by_id[kept.id]["status"] == "present"
    assert by_id[kept.id]["erased_at"] is None
    assert by_id[erased.id]["status"] == "erased"
    assert isinstance(by_id[erased.id]["erased_at"], datetime)
    others = [row for record_id, row in by_id.items() if record_id not in (kept.id, erased.id)]
    assert others
    assert all(row["status"] == "missing" for row in others)
    assert verify_export(out, ledger.verifier)  # blob states are the ledger's word


def test_records_that_are_not_decisions_are_exported_whole(ledger: Ledger, out: Location) -> None:
    enroll_demo_principals(ledger, "acme")
    fill(ledger, 10, seed=12)
    export_ledger(ledger, out)
    rows = run_sql(connect(out), "SELECT * FROM other_records ORDER BY idx").to_pylist()
    assert [row["idx"] for row in rows] == [0, 1, 2]
    assert {row["payload_type"] for row in rows} == {PRINCIPAL_PAYLOAD_TYPE}
    principals = {p.id: p for p in demo_principals("acme")}
    for row in rows:
        payload = msgspec.json.decode(row["payload"])
        assert payload["did"] == principals[row["record_id"]].did
    assert duck_totals(out)["acme"][0] == 10
    assert verify_export(out, ledger.verifier)


def test_records_of_two_kinds_in_one_partition_verify(ledger: Ledger, out: Location) -> None:
    """A principal enrolled on the day of the decisions shares their segment files."""
    decisions = demo_envelopes(ledger.engine, 6, seed=13)
    append_all(ledger, decisions[:3])
    register_demo_keys(ledger.engine, "acme", [PRINCIPAL_SERVICE])
    [principal] = demo_principals("acme")[:1]
    first_day = stored_decisions(ledger.engine)[0][1].occurred_at
    enrolled = msgspec.structs.replace(principal, occurred_at=first_day)
    append_all(ledger, [sign_record(enrolled, demo_signing_key("acme", PRINCIPAL_SERVICE))])
    append_all(ledger, decisions[3:])
    manifest = export_ledger(ledger, out).manifest
    assert manifest is not None
    segments = {f.path.rsplit("/", 1)[0].split("/", 1)[1] for f in manifest.files}
    assert len(segments) == 1  # one tenant, one day
    assert verify_export(out, ledger.verifier)


def test_an_object_storage_uri_is_written_and_read_the_same_way(ledger: Ledger) -> None:
    fill(ledger, 30, seed=8)
    # pyarrow's in-memory filesystem stands in for S3 or GCS: the same code path.
    location = open_location("mock:///bucket/exports")
    assert not location.local
    export_ledger(ledger, location)
    assert verify_export(location, ledger.verifier)
    totals = ledger_totals(ledger.engine)["acme"]
    assert duck_totals(location)["acme"] == (
        totals.decisions,
        totals.cost,
        totals.input_tokens,
        totals.output_tokens,
    )


def test_bounded_files_and_worker_processes_give_the_same_rows(
    ledger: Ledger, tmp_path: Path
) -> None:
    fill(ledger, 120, seed=9)
    single = open_location(str(tmp_path / "single"))
    export_ledger(ledger, single)
    split = open_location(str(tmp_path / "split"))
    small = FileLimits(max_file_bytes=1, max_file_rows=7, row_group_rows=3)
    export_ledger(ledger, split, limits=small, workers=2, parallel_from=50)
    assert verify_export(split, ledger.verifier)
    manifest = read_history(split)[0].manifest
    assert max(f.rows for f in manifest.files if f.table == "decisions") <= 7
    query = "SELECT * EXCLUDE (entry_bytes) FROM decisions ORDER BY idx"
    assert run_sql(connect(single), query).equals(run_sql(connect(split), query))


def test_an_altered_ledger_is_not_exported(ledger: Ledger, out: Location) -> None:
    fill(ledger, 20, seed=10)
    disable_append_only_guards(ledger.engine)
    with ledger.engine.begin() as connection:
        connection.execute(
            text("UPDATE log_entries SET integrated_us = integrated_us + 1 WHERE idx = 13")
        )
    with pytest.raises(ExportError, match="entry 13: its stored leaf does not match"):
        export_ledger(ledger, out)
    assert list_files(out) == []  # nothing half-written is left behind


def test_exported_columns_are_the_payloads(ledger: Ledger, out: Location) -> None:
    fill(ledger, 9, seed=11)
    export_ledger(ledger, out)
    rows = {row["idx"]: row for row in run_sql(connect(out), "SELECT * FROM decisions").to_pylist()}
    for index, decision in stored_decisions(ledger.engine):
        row = rows[index]
        assert row["record_id"] == decision.id
        assert row["date"] == decision.occurred_at.astimezone(UTC).date()
        assert row["model_version"] == decision.model.version
        assert msgspec.json.decode(row["output"]) == decision.output.decision
        assert row["root_delegator"] == decision.delegation[0].iss
        valid_until = decision.freshness.valid_until if decision.freshness else None
        assert row["valid_until"] == valid_until
        assert row["policy_result"] == (decision.policy.result if decision.policy else None)
        assert hashlib.sha256(b"\x00" + row["entry_bytes"]).digest() == row["leaf_hash"]
