"""Freshness in the Parquet export and in `prov report freshness`.

A ledger of decisions that rely on context keys (by `depends_on` and by snapshots), some in
one trace or conversation with different versions, and context changes (later ones, a key
changed back, a key changed twice to one version, a decision stale when it was made) is
exported. Then:

- the `dependencies`, `context_changes` and `decisions.trace_id/conversation_id` columns
  equal the ledger's own freshness index;
- the report's "Superseded by context changes" equals the ledger's `stale_marks` exactly,
  and its "Inconsistent context" pairs equal a brute-force oracle over the signed records
  (and the ledger's own `inconsistencies`), on SQLite and PostgreSQL; a property test over
  random logs, exported in increments, holds both on SQLite;
- `prov export verify` passes, and names the entry when an exported dependency, change or
  conversation is altered;
- an export written before (`prov.export/v1`, context changes in `other_records`) still
  verifies and reports, and is not continued in the new format.
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from ingest.client._records import sign_record
from ledger.indexes.freshness import decision_freshness, inconsistencies, threads_of
from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.records import dsse
from ledger.records.decision import Decision, Links, decode_decision
from ledger.storage.db import make_engine
from ledger.storage.schema import (
    context_changes,
    context_dependencies,
    decision_threads,
    stale_marks,
)
from query.analytics.reports import Report, ReportQuery, run_report
from query.analytics.views import connect, run_sql
from query.export import exporter as exporter_module
from query.export.exporter import export_ledger
from query.export.manifest import decode_manifest, encode_manifest
from query.export.paths import Location, manifest_path, open_location, read_bytes, write_bytes
from query.export.rows import ExportError, append_rows, decode
from query.export.schema import FORMAT, FORMAT_V1, TABLES, tables_of
from query.export.verify import verify_export
from tests.conftest import TEST_ORIGIN
from tests.freshness_support import change, decision, key_for, register_tenant
from tests.test_export_helpers import stored_decisions

SUPERSEDED = "Superseded by context changes"
PER_KEY = "Superseded per key"
INCONSISTENT = "Inconsistent context"
TRACE_A = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_B = "00f067aa0ba902b700f067aa0ba902b7"

Mark = tuple[int, str, str]  # (decision index, key, version)


def threaded(
    tenant: str,
    record_id: str,
    depends_on: tuple[tuple[str, str], ...] = (),
    *,
    snapshots: tuple[tuple[str, str], ...] = (),
    trace: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> bytes:
    """A signed decision (`tests.freshness_support.decision`) with `links.trace_id` and
    attributes of its own."""
    envelope = decision(
        tenant,
        record_id,
        depends_on,
        snapshots=[(name, version, None) for name, version in snapshots],
    )
    made = decode_decision(dsse.payload_bytes(dsse.decode_envelope(envelope)))
    made = msgspec.structs.replace(
        made,
        links=None if trace is None else Links(trace_id=trace),
        attributes=attributes or {},
    )
    return sign_record(made, key_for(tenant)).envelope


def append(ledger: Ledger, envelopes: list[bytes]) -> list[int]:
    results = ledger.append(envelopes)
    assert all(isinstance(result, Receipt) for result in results), results
    return [result.index for result in results if isinstance(result, Receipt)]


def build(ledger: Ledger) -> dict[str, int]:
    """The scenario of the module docstring; the log index of each record by its id."""
    for tenant in ("acme", "globex"):
        register_tenant(ledger.engine, tenant)
    conv = {"conversation_id": "conv-1"}
    batches: list[list[tuple[str, bytes]]] = [
        [
            ("d1", threaded("acme", "d1", (("stock:a", "v1"),), attributes=conv)),
            # Same conversation, another version of stock:a: inconsistent with d1.
            ("d2", threaded("acme", "d2", snapshots=(("stock:a", "v2"),), attributes=conv)),
            # Relies on price:a by depends_on and on stock:b by a snapshot, in trace A.
            (
                "d3",
                threaded(
                    "acme",
                    "d3",
                    (("price:a", "p1"),),
                    snapshots=(("stock:b", "s1"),),
                    trace=TRACE_A,
                ),
            ),
            # Names stock:a v1 twice (depends_on and snapshot: one dependency) and stock:b s2
            # in trace A (inconsistent with d3), and conversation conv-1 by the GenAI name.
            (
                "d4",
                threaded(
                    "acme",
                    "d4",
                    (("stock:a", "v1"),),
                    snapshots=(("stock:a", "v1"), ("stock:b", "s2")),
                    trace=TRACE_A,
                    attributes={"gen_ai.conversation.id": "conv-1"},
                ),
            ),
            # Another tenant, the same conversation id: never paired with acme's.
            ("g1", threaded("globex", "g1", (("stock:a", "v7"),), attributes=conv)),
        ],
        # The first change of stock:a, and in the same batch a decision stale when made.
        [
            ("c1", change("acme", "c1", "stock:a", "v2")),
            ("d5", threaded("acme", "d5", (("stock:a", "v1"),), attributes=conv)),
            ("d6", threaded("acme", "d6", (("stock:a", "v2"),))),
            # A conversation id that is not a string does not count; the trace does.
            (
                "d7",
                threaded(
                    "acme",
                    "d7",
                    (("stock:b", "s1"),),
                    trace=TRACE_B,
                    attributes={"conversation_id": 7},
                ),
            ),
            ("d8", threaded("acme", "d8", (("stock:b", "s3"),), trace=TRACE_B)),
        ],
        [("c2", change("acme", "c2", "stock:a", "v3"))],
        # stock:a back to v1: a new decision on v1 is fresh, one on v3 is stale when made.
        [
            ("c3", change("acme", "c3", "stock:a", "v1")),
            ("d9", threaded("acme", "d9", (("stock:a", "v1"),))),
            ("d10", threaded("acme", "d10", (("stock:a", "v3"),))),
        ],
        # price:a to the version d3 relied on, twice, then to another: only the last marks.
        [
            ("c4", change("acme", "c4", "price:a", "p1")),
            ("c5", change("acme", "c5", "price:a", "p1")),
        ],
        [
            ("c6", change("acme", "c6", "price:a", "p2")),
            ("g2", change("globex", "g2", "stock:a", "v8")),
            # No dependencies: in a trace, but never part of a pair.
            ("d11", threaded("acme", "d11", trace=TRACE_A)),
        ],
    ]
    indexes: dict[str, int] = {}
    for batch in batches:
        for (name, _), index in zip(batch, append(ledger, [e for _, e in batch]), strict=True):
            indexes[name] = index
    return indexes


def sections(location: Location, tenant: str | None = None, **query: Any) -> dict[str, Any]:
    """The freshness report's sections by title (without its limit), as lists of rows."""
    report: Report = run_report(
        connect(location, tenant=tenant), "freshness", ReportQuery(limit=10_000, **query)
    )
    return {
        section.title.split(" (at most", 1)[0]: section.table.to_pylist()
        for section in report.sections
    }


def ledger_marks(ledger: Ledger, tenant: str | None = None) -> dict[Mark, int]:
    query = select(stale_marks)
    if tenant is not None:
        query = query.where(stale_marks.c.tenant == tenant)
    with ledger.engine.connect() as connection:
        return {
            (row.idx, row.key, row.version): row.change_idx for row in connection.execute(query)
        }


def report_marks(rows: list[dict[str, Any]]) -> dict[Mark, int]:
    marks = {(row["idx"], row["key"], row["version"]): row["change_idx"] for row in rows}
    assert len(marks) == len(rows)
    return marks


def oracle_pairs(ledger: Ledger) -> set[tuple[Any, ...]]:
    """Every inconsistent pair, by brute force over the signed decisions: two decisions of
    one tenant and thread, the older first, with a key each relied on at another version."""
    decided: list[tuple[int, Decision]] = stored_decisions(ledger.engine)
    pairs = set()
    for (i, a), (j, b) in itertools.combinations(decided, 2):
        if a.tenant != b.tenant:
            continue
        fa, fb = decision_freshness(a), decision_freshness(b)
        if fa is None or fb is None:
            continue
        for thread in set(threads_of(a)) & set(threads_of(b)):
            for key_a, version_a in fa.dependencies:
                for key_b, version_b in fb.dependencies:
                    if key_a == key_b and version_a != version_b:
                        pairs.add((a.tenant, thread, key_a, i, a.id, version_a, j, b.id, version_b))
    return pairs


def report_pairs(rows: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    pairs = {tuple(row.values()) for row in rows}
    assert len(pairs) == len(rows)
    return pairs


def check_index_columns(ledger: Ledger, location: Location) -> None:
    """The exported dependencies, threads and changes are the ledger's freshness index."""
    views = connect(location)
    with ledger.engine.connect() as connection:
        dependencies = {
            (r.tenant, r.idx, r.key, r.version)
            for r in connection.execute(select(context_dependencies))
        }
        threads = {
            (r.tenant, r.idx, r.thread) for r in connection.execute(select(decision_threads))
        }
        changes = {
            (r.tenant, r.idx, r.record_id, r.key, r.version, r.changed_us)
            for r in connection.execute(select(context_changes))
        }
    exported = run_sql(views, "SELECT tenant, idx, key, version FROM dependencies").to_pylist()
    assert {tuple(row.values()) for row in exported} == dependencies
    assert len(exported) == len(dependencies)
    exported_threads = run_sql(
        views,
        "SELECT tenant, idx, 'trace:' || trace_id FROM decisions WHERE trace_id IS NOT NULL "
        "AND idx IN (SELECT idx FROM dependencies) UNION ALL "
        "SELECT tenant, idx, 'conversation:' || conversation_id FROM decisions "
        "WHERE conversation_id IS NOT NULL AND idx IN (SELECT idx FROM dependencies)",
    ).to_pylist()
    assert {tuple(row.values()) for row in exported_threads} == threads
    exported_changes = run_sql(
        views,
        "SELECT tenant, idx, record_id, key, version, epoch_us(changed_at) FROM context_changes",
    ).to_pylist()
    assert {tuple(row.values()) for row in exported_changes} == changes
    others = run_sql(
        views, "SELECT count(*) AS n FROM other_records WHERE payload_type LIKE '%context-change%'"
    )
    assert others.to_pylist() == [{"n": 0}]


# --- the scenario, on both engines ---------------------------------------------------------


def test_the_report_agrees_with_the_ledger(ledger: Ledger, tmp_path: Path) -> None:
    at = build(ledger)
    location = open_location(str(tmp_path / "exports"))
    export_ledger(ledger, location)
    report = verify_export(location, ledger.verifier)
    assert report, report.fault
    check_index_columns(ledger, location)

    found = sections(location)
    marks = report_marks(found[SUPERSEDED])
    assert marks == ledger_marks(ledger)
    # What the scenario was built to show, spelled out.
    assert marks == {
        (at["d1"], "stock:a", "v1"): at["c1"],
        (at["d2"], "stock:a", "v2"): at["c2"],
        (at["d3"], "price:a", "p1"): at["c6"],
        (at["d4"], "stock:a", "v1"): at["c1"],
        (at["d5"], "stock:a", "v1"): at["c1"],  # stale when made
        (at["d6"], "stock:a", "v2"): at["c2"],
        (at["d10"], "stock:a", "v3"): at["c3"],  # stale when made
        (at["g1"], "stock:a", "v7"): at["g2"],
    }
    by_mark = {(row["idx"], row["key"], row["version"]): row for row in found[SUPERSEDED]}
    d5 = by_mark[(at["d5"], "stock:a", "v1")]
    assert (d5["record_id"], d5["change_id"], d5["change_version"]) == ("d5", "c1", "v2")
    assert d5["stale_when_made"] is True
    assert by_mark[(at["d1"], "stock:a", "v1")]["stale_when_made"] is False

    per_key = {(row["tenant"], row["key"]): row for row in found[PER_KEY]}
    assert {k: (r["superseded"], r["decisions"], r["changes"]) for k, r in per_key.items()} == {
        ("acme", "stock:a"): (6, 6, 3),
        ("acme", "price:a"): (1, 1, 1),
        ("globex", "stock:a"): (1, 1, 1),
    }
    assert per_key[("acme", "stock:a")]["stale_when_made"] == 2

    pairs = report_pairs(found[INCONSISTENT])
    assert pairs == oracle_pairs(ledger)
    assert {(p[1], p[2], p[4], p[7]) for p in pairs} >= {
        ("conversation:conv-1", "stock:a", "d1", "d2"),
        ("conversation:conv-1", "stock:a", "d2", "d4"),
        ("trace:" + TRACE_A, "stock:b", "d3", "d4"),
        ("trace:" + TRACE_B, "stock:b", "d7", "d8"),
    }
    assert not any("g1" in (p[4], p[7]) for p in pairs)
    # Each decision's side of the pairs is what the ledger tells its why-report.
    with ledger.engine.connect() as connection:
        for index in at.values():
            theirs = {
                (i.thread, i.key, i.version, i.other_idx, i.other_version)
                for i in inconsistencies(connection, index)
            }
            ours = {(p[1], p[2], p[5], p[6], p[8]) for p in pairs if p[3] == index} | {
                (p[1], p[2], p[8], p[3], p[5]) for p in pairs if p[6] == index
            }
            assert ours == theirs, index


def test_filters_tenants_charts_and_json(tmp_path: Path) -> None:
    ledger = Ledger.init(make_engine(str(tmp_path / "l.db")), tmp_path / "l.key", TEST_ORIGIN)
    build(ledger)
    location = open_location(str(tmp_path / "exports"))
    export_ledger(ledger, location)
    scoped = sections(location, tenant="globex")
    assert report_marks(scoped[SUPERSEDED]) == ledger_marks(ledger, "globex")
    assert scoped[INCONSISTENT] == []
    # A filter on the decisions keeps the marks of those decisions, by the whole log.
    none_yet = sections(location, until=datetime(2026, 12, 1, 11, tzinfo=UTC))
    assert none_yet[SUPERSEDED] == []
    assert none_yet[PER_KEY] == []
    other = sections(location, service="nobody")
    assert other[SUPERSEDED] == other[INCONSISTENT] == []

    from query.analytics.charts import render_chart  # noqa: PLC0415 - matplotlib is slow

    result = run_report(connect(location), "freshness", ReportQuery())
    assert render_chart(result, "png").startswith(b"\x89PNG")
    assert render_chart(result, "svg") == render_chart(result, "svg")
    titles = [
        section["title"]
        for section in msgspec.json.decode(msgspec.json.encode(result.to_json()))["sections"]
    ]
    assert titles[2:] == [
        f"{SUPERSEDED} (at most 50)",
        PER_KEY,
        f"{INCONSISTENT} (at most 50 pairs)",
    ]
    limited = run_report(connect(location), "freshness", ReportQuery(limit=2)).sections
    assert limited[2].table.num_rows == 2
    assert (
        limited[2].table.column("idx").to_pylist()
        == sorted(index for index, _, _ in ledger_marks(ledger))[:2]
    )


# --- verification ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Ledger, Path]]:
    folder = tmp_path_factory.mktemp("freshness")
    ledger = Ledger.init(make_engine(str(folder / "l.db")), folder / "l.key", TEST_ORIGIN)
    build(ledger)
    export_ledger(ledger, open_location(str(folder / "export")))
    yield ledger, folder / "export"
    ledger.close()


def _rewrite_column(folder: Path, table_name: str, column: str, row: int, value: Any) -> str:
    """Change one cell of the first file of a table, and list the file's new digest in the
    manifest as an attacker would; the file's path."""
    relative = sorted(
        p.relative_to(folder).as_posix() for p in (folder / table_name).rglob("*.parquet")
    )[0]
    table = pq.read_table(folder / relative)
    values = table.column(column).to_pylist()
    values[row] = value
    position = table.schema.get_field_index(column)
    field = table.schema.field(column)
    table = table.set_column(position, field, pa.array(values, field.type))
    pq.write_table(table, folder / relative, compression="zstd")
    data = (folder / relative).read_bytes()
    manifest_file = folder / manifest_path(1)
    manifest = decode_manifest(manifest_file.read_bytes())
    files = [
        msgspec.structs.replace(f, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        if f.path == relative
        else f
        for f in manifest.files
    ]
    manifest_file.write_bytes(encode_manifest(msgspec.structs.replace(manifest, files=files)))
    return relative


@pytest.mark.parametrize(
    ("table_name", "column", "value"),
    [
        ("dependencies", "version", "v9"),
        ("dependencies", "source", "context"),
        ("context_changes", "version", "v9"),
        ("decisions", "conversation_id", "conv-9"),
        ("decisions", "trace_id", TRACE_B),
    ],
)
def test_export_verify_names_an_altered_freshness_row(
    exported: tuple[Ledger, Path], tmp_path: Path, table_name: str, column: str, value: str
) -> None:
    ledger, original = exported
    assert verify_export(open_location(str(original)), ledger.verifier)
    folder = Path(shutil.copytree(original, tmp_path / "export"))
    relative = _rewrite_column(folder, table_name, column, 0, value)
    first = pq.read_table(folder / relative).column("idx").to_pylist()[0]
    report = verify_export(open_location(str(folder)), ledger.verifier)
    assert not report
    assert report.fault == (
        f"{relative}: row 0 (entry {first}): {column} is not what the signed envelope says"
    )


def test_a_dropped_dependency_row_is_found(exported: tuple[Ledger, Path], tmp_path: Path) -> None:
    ledger, original = exported
    folder = Path(shutil.copytree(original, tmp_path / "export"))
    relative = sorted(
        p.relative_to(folder).as_posix() for p in (folder / "dependencies").rglob("*.parquet")
    )[0]
    table = pq.read_table(folder / relative).slice(1)
    pq.write_table(table, folder / relative, compression="zstd")
    data = (folder / relative).read_bytes()
    manifest_file = folder / manifest_path(1)
    manifest = decode_manifest(manifest_file.read_bytes())
    files = [
        msgspec.structs.replace(
            f, rows=table.num_rows, bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
        )
        if f.path == relative
        else f
        for f in manifest.files
    ]
    manifest_file.write_bytes(encode_manifest(msgspec.structs.replace(manifest, files=files)))
    fault = verify_export(open_location(str(folder)), ledger.verifier).fault
    assert fault is not None
    assert fault.startswith(f"{relative}: ")
    assert "the envelopes give" in fault


# --- random logs, exported in increments ----------------------------------------------------


KEYS = ("stock:a", "stock:b")
VERSIONS = ("v1", "v2", "v3")
THREADS = (None, "x", "y")
_tenants = itertools.count()


@dataclass(frozen=True)
class Op:
    kind: str  # "d" (decision) or "c" (change)
    deps: tuple[tuple[str, str], ...] = ()
    snaps: tuple[tuple[str, str], ...] = ()
    conversation: str | None = None
    key: str = ""
    version: str = ""


pairs_of = st.tuples(st.sampled_from(KEYS), st.sampled_from(VERSIONS))
ops = st.one_of(
    st.builds(
        lambda deps, snaps, conversation: Op(
            "d", tuple(dict.fromkeys(deps)), tuple(dict.fromkeys(snaps)), conversation
        ),
        st.lists(pairs_of, max_size=2),
        st.lists(pairs_of, max_size=2),
        st.sampled_from(THREADS),
    ),
    st.builds(lambda pair: Op("c", key=pair[0], version=pair[1]), pairs_of),
)


@pytest.fixture
def incremental(tmp_path: Path) -> Iterator[tuple[Ledger, Location]]:
    ledger = Ledger.init(make_engine(str(tmp_path / "l.db")), tmp_path / "l.key", TEST_ORIGIN)
    yield ledger, open_location(str(tmp_path / "exports"))
    ledger.close()


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(program=st.lists(ops, min_size=1, max_size=12), cut=st.integers(0, 12))
def test_random_logs_agree_with_the_ledger(
    incremental: tuple[Ledger, Location], program: list[Op], cut: int
) -> None:
    ledger, location = incremental
    tenant = f"t{next(_tenants)}"
    register_tenant(ledger.engine, tenant)
    envelopes = [
        threaded(
            tenant,
            f"d{n}",
            op.deps,
            snapshots=op.snaps,
            attributes=None if op.conversation is None else {"conversation_id": op.conversation},
        )
        if op.kind == "d"
        else change(tenant, f"c{n}", op.key, op.version)
        for n, op in enumerate(program)
    ]
    cut %= len(envelopes) + 1
    for part in (envelopes[:cut], envelopes[cut:]):
        if part:
            append(ledger, part)
    export_ledger(ledger, location)  # carries on from the examples before
    found = sections(location, tenant=tenant)
    assert report_marks(found[SUPERSEDED]) == ledger_marks(ledger, tenant)
    assert report_pairs(found[INCONSISTENT]) == {
        pair for pair in oracle_pairs(ledger) if pair[0] == tenant
    }


# --- exports written before this format ------------------------------------------------------


def _export_v1(ledger: Ledger, location: Location, monkeypatch: pytest.MonkeyPatch) -> None:
    """Export as `prov.export/v1` did: context changes in `other_records`, no dependencies,
    no trace or conversation columns."""
    v1 = tables_of(FORMAT_V1)
    v2_names = list(tables_of(FORMAT))  # TABLES itself is patched below
    dropped = [
        position
        for position, field in enumerate(TABLES["decisions"])
        if field.name not in v1["decisions"].names
    ]

    def v1_rows(entry: Any, record: Any, rows: Any, states: Any) -> None:
        scratch: dict[str, list[Any]] = {name: [] for name in v2_names}
        append_rows(entry, record, scratch, states)
        for name, produced in scratch.items():
            if name not in v1:
                continue
            if name == "decisions":
                rows[name].extend(
                    tuple(v for n, v in enumerate(row) if n not in dropped) for row in produced
                )
            else:
                rows[name].extend(produced)

    with monkeypatch.context() as patch:
        for name in TABLES.keys() - v1.keys():
            patch.delitem(TABLES, name)
        patch.setitem(TABLES, "decisions", v1["decisions"])
        patch.setattr(exporter_module, "decode", lambda entry: decode(entry, FORMAT_V1))
        patch.setattr(exporter_module, "append_rows", v1_rows)
        export_ledger(ledger, location)
    path = manifest_path(1)
    manifest = decode_manifest(read_bytes(location, path))
    write_bytes(
        location, path, encode_manifest(msgspec.structs.replace(manifest, format=FORMAT_V1))
    )


@pytest.mark.parametrize("where", ["local", "object-storage"])
def test_a_v1_export_still_verifies_and_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    ledger = Ledger.init(make_engine(str(tmp_path / "l.db")), tmp_path / "l.key", TEST_ORIGIN)
    build(ledger)
    uri = str(tmp_path / "v1") if where == "local" else f"mock:///bucket/v1-{tmp_path.name}"
    location = open_location(uri)
    _export_v1(ledger, location, monkeypatch)
    assert decode_manifest(read_bytes(location, manifest_path(1))).format == FORMAT_V1
    report = verify_export(location, ledger.verifier)
    assert report, report.fault
    assert report.rows["other_records"] == 7  # the context changes
    assert "dependencies" not in report.rows

    views = connect(location)
    columns = run_sql(views, "SELECT * FROM decisions LIMIT 0").column_names
    assert columns == ["tenant", "date", *TABLES["decisions"].names]
    threads = run_sql(
        views,
        "SELECT count(*) AS n, count(trace_id) AS t, count(conversation_id) AS c FROM decisions",
    )
    assert threads.to_pylist() == [{"n": 12, "t": 0, "c": 0}]
    found = sections(location)
    assert found[SUPERSEDED] == found[PER_KEY] == found[INCONSISTENT] == []
    assert len(found["Expired decisions per service"]) == 1

    append(ledger, [threaded("acme", "late", (("stock:a", "v1"),))])
    with pytest.raises(ExportError, match=r"holds a prov\.export/v1 export"):
        export_ledger(ledger, location)
    ledger.close()
