"""Invalidation: a context change supersedes exactly the decisions that relied on an older
version of its key, and no others, on SQLite and PostgreSQL (docs/freshness.md).

The property test draws random logs of decisions and changes over a few keys and versions,
appends them in random batches (so a change and the decisions it supersedes share a
transaction as often as not), and compares every stale mark with a brute-force oracle that
reads the rule straight from the docs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from ledger.errors import RecordRejected
from ledger.indexes.freshness import rebuild
from ledger.ledger import Ledger
from ledger.storage.db import make_engine
from ledger.storage.schema import stale_marks
from tests.conftest import TEST_ORIGIN
from tests.freshness_support import change, decision, register_tenant
from tests.support import prov

KEYS = ("stock:a", "stock:b", "price:a")
VERSIONS = ("v1", "v2", "v3")
_tenants = itertools.count()


@dataclass(frozen=True)
class Op:
    kind: str  # "d" (decision) or "c" (change)
    deps: tuple[tuple[str, str], ...] = ()
    key: str = ""
    version: str = ""


pairs = st.tuples(st.sampled_from(KEYS), st.sampled_from(VERSIONS))
ops = st.one_of(
    st.builds(lambda deps: Op("d", tuple(dict.fromkeys(deps))), st.lists(pairs, max_size=3)),
    st.builds(lambda pair: Op("c", key=pair[0], version=pair[1]), pairs),
)


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger.init(make_engine(str(tmp_path / "ledger.db")), tmp_path / "key", TEST_ORIGIN)
    yield ledger
    ledger.close()


@pytest.fixture
def postgres_ledger(postgres_url: str, tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger.init(make_engine(postgres_url), tmp_path / "key", TEST_ORIGIN)
    yield ledger
    ledger.close()


def oracle(log: list[tuple[int, Op]]) -> dict[tuple[int, str, str], int]:
    """(decision index, key, version) -> the index of the change that superseded it."""
    first_seen: dict[tuple[str, str], int] = {}
    for index, op in log:
        for pair in op.deps if op.kind == "d" else ((op.key, op.version),):
            first_seen.setdefault(pair, index)
    changes = [(index, op) for index, op in log if op.kind == "c"]
    marks = {}
    for index, op in log:
        if op.kind != "d":
            continue
        for key, version in op.deps:
            before = [c for c in changes if c[1].key == key and c[0] < index]
            if before:
                latest_index, latest = before[-1]
                if latest.version != version and first_seen[(key, version)] < latest_index:
                    marks[(index, key, version)] = latest_index
                    continue
            after = [
                c[0]
                for c in changes
                if c[1].key == key and c[0] > index and c[1].version != version
            ]
            if after:
                marks[(index, key, version)] = after[0]
    return marks


def run(ledger: Ledger, program: list[Op], cuts: list[int]) -> None:
    tenant = f"t{next(_tenants)}"
    register_tenant(ledger.engine, tenant)
    envelopes = [
        decision(tenant, f"d{n}", op.deps)
        if op.kind == "d"
        else change(tenant, f"c{n}", op.key, op.version)
        for n, op in enumerate(program)
    ]
    bounds = sorted({0, len(envelopes), *(cut % (len(envelopes) + 1) for cut in cuts)})
    log: list[tuple[int, Op]] = []
    invalidated = {}
    for start, end in itertools.pairwise(bounds):
        results = ledger.append(envelopes[start:end])
        for op, result in zip(program[start:end], results, strict=True):
            assert not isinstance(result, RecordRejected), result
            log.append((result.index, op))
            if op.kind == "c":
                invalidated[result.index] = result.invalidated
    with ledger.engine.connect() as connection:
        stored = {
            (row.idx, row.key, row.version): row.change_idx
            for row in connection.execute(select(stale_marks).where(stale_marks.c.tenant == tenant))
        }
    expected = oracle(log)
    assert stored == expected
    # The index rebuilt from the log alone is the one the sequencer built.
    with ledger.engine.connect() as connection, connection.begin() as transaction:
        rebuilt = rebuild(connection)
        transaction.rollback()
    assert rebuilt.consistent, (rebuilt.missing, rebuilt.unexpected)
    # The receipt of each change counts the decisions recorded before it that it superseded.
    for change_index, count in invalidated.items():
        before = {
            d for (d, _k, _v), c in expected.items() if c == change_index and d < change_index
        }
        assert count == len(before)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    program=st.lists(ops, min_size=1, max_size=14), cuts=st.lists(st.integers(0, 20), max_size=3)
)
def test_changes_supersede_exactly_what_the_rule_says_on_sqlite(
    sqlite_ledger: Ledger, program: list[Op], cuts: list[int]
) -> None:
    run(sqlite_ledger, program, cuts)


@pytest.mark.postgres
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    program=st.lists(ops, min_size=1, max_size=14), cuts=st.lists(st.integers(0, 20), max_size=3)
)
def test_changes_supersede_exactly_what_the_rule_says_on_postgres(
    postgres_ledger: Ledger, program: list[Op], cuts: list[int]
) -> None:
    run(postgres_ledger, program, cuts)


def test_a_key_changed_back_makes_new_decisions_fresh_and_old_marks_stay(ledger: Ledger) -> None:
    register_tenant(ledger.engine, "acme")
    first = ledger.append([decision("acme", "d1", [("stock:a", "v1")])])
    moved = ledger.append([change("acme", "c1", "stock:a", "v2")])
    back = ledger.append([change("acme", "c2", "stock:a", "v1")])
    late = ledger.append(
        [decision("acme", "d2", [("stock:a", "v1")]), decision("acme", "d3", [("stock:a", "v2")])]
    )
    assert [r.invalidated for r in moved + back] == [1, 0]  # d1 was already stale
    with ledger.engine.connect() as connection:
        marks = {(row.idx, row.change_idx) for row in connection.execute(select(stale_marks))}
    # d1 stays stale by c1; d2 relies on the version c2 restored; d3 was stale when made.
    assert marks == {(first[0].index, moved[0].index), (late[1].index, back[0].index)}


def test_other_tenants_and_other_keys_are_untouched(ledger: Ledger) -> None:
    for tenant in ("acme", "globex"):
        register_tenant(ledger.engine, tenant)
    ledger.append(
        [
            decision("acme", "d1", [("stock:a", "v1")]),
            decision("acme", "d2", [("stock:b", "v1")]),
            decision("globex", "d1", [("stock:a", "v1")]),
        ]
    )
    [receipt] = ledger.append([change("acme", "c1", "stock:a", "v2")])
    assert receipt.invalidated == 1
    with ledger.engine.connect() as connection:
        assert [(r.tenant, r.key) for r in connection.execute(select(stale_marks))] == [
            ("acme", "stock:a")
        ]


def test_snapshots_count_as_dependencies_and_a_retry_counts_nothing(ledger: Ledger) -> None:
    register_tenant(ledger.engine, "acme")
    ledger.append([decision("acme", "d1", snapshots=[("stock:a", "v1", None)], declare=False)])
    envelope = change("acme", "c1", "stock:a", "v2")
    [first] = ledger.append([envelope])
    [again] = ledger.append([envelope])
    assert (first.invalidated, first.status) == (1, "created")
    assert (again.invalidated, again.status) == (None, "existing")


def test_reindex_finds_and_mends_a_tampered_index(tmp_path: Path) -> None:
    db, key = str(tmp_path / "ledger.db"), tmp_path / "ledger.key"
    ledger = Ledger.init(make_engine(db), key, TEST_ORIGIN)
    register_tenant(ledger.engine, "acme")
    [first, _] = ledger.append(
        [decision("acme", "d1", [("stock:a", "v1")]), decision("acme", "d2", [("stock:b", "v1")])]
    )
    ledger.append([change("acme", "c1", "stock:a", "v2")])
    assert prov(["reindex", "--check"], db=db, key=key).code == 0
    with ledger.engine.begin() as connection:
        connection.execute(stale_marks.delete())
        connection.execute(
            stale_marks.insert().values(
                idx=first.index + 1,
                key="stock:b",
                version="v1",
                tenant="acme",
                change_idx=2,
                stale_us=0,
            )
        )
    ledger.close()
    checked = prov(["reindex", "--check"], db=db, key=key)
    assert checked.code == 1
    assert f"decision {first.index} on stock:a@v1" in checked.err
    assert f"decision {first.index + 1} on stock:b@v1" in checked.err
    mended = prov(["reindex"], db=db, key=key)
    assert mended.code == 0, mended.err
    assert "1 stale marks" in mended.out
    assert prov(["reindex", "--check"], db=db, key=key).code == 0
