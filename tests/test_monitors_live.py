"""Live monitors: every value a receipt reports equals a brute-force recomputation from the
log, at every decision, on SQLite and PostgreSQL (docs/monitors.md).

The property test draws random programs of batches of loan decisions (random sectors,
amounts, approvals, costs, subjects, traces and model calls), random clock advances (so
sliding windows expire and a calendar day turns), restarts (a fresh set of windows rebuilt
from the log) and appends by a second ledger object on the same database, as a second
process would (so the windows catch up on entries they did not sequence). After each batch
it checks every reading against `tests.monitor_support.oracle_value`, which re-reads the log
and recomputes the aggregate with plain loops and `fnmatch`, and checks that the breach
records alternate breached/cleared per group, each at a value the oracle agrees with.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import RecordRejected
from ledger.ledger import Ledger
from ledger.log import sequencer
from ledger.log.entry import to_micros
from ledger.log.receipt import Receipt
from ledger.log.store import read_entries, read_head
from ledger.monitors.live import LiveMonitors
from ledger.monitors.reindex import rebuild_monitors
from ledger.records import dsse
from ledger.records.monitor import (
    BREACH_PAYLOAD_TYPE,
    MonitorDefinition,
    decode_breach,
)
from ledger.storage.db import make_engine
from tests.conftest import TEST_ORIGIN
from tests.monitor_support import definition, loan, logged_decisions, oracle_value, register_tenant

# Just before a UTC midnight, so that a program's clock may cross into the next day.
BASE_US = to_micros(datetime(2026, 12, 1, 23, 59, 30, tzinfo=UTC))
_tenants = itertools.count()


def monitors_for(tenant: str) -> list[MonitorDefinition]:
    return [
        definition(
            tenant,
            "concentration",
            aggregate="share",
            unit="USD",
            group_by="group",
            window="10s",
            limit="0.5",
            min_count=3,
            action="flag",
            select={"group": "sector:*", "where": ["output.decision.approved == true"]},
        ),
        definition(
            tenant, "spend", aggregate="sum_cost", unit="USD", window="calendar:day", limit="5"
        ),
        definition(
            tenant, "people", aggregate="distinct_subjects", window="6s", limit="2", group_by="none"
        ),
        definition(
            tenant,
            "loops",
            aggregate="model_calls",
            group_by="trace",
            window="20s",
            limit="4",
            select={"decision_type": "loan.*"},
        ),
        definition(
            tenant,
            "exposure",
            aggregate="sum_exposure",
            unit="USD",
            group_by="group",
            window="8s",
            limit="250",
            select={"group_regex": "sector:(a|b)"},
        ),
    ]


@dataclass(frozen=True)
class Spec:
    sector: str
    amount: int
    approved: bool
    cost: int | None
    subject: str | None
    trace: str | None
    calls: int


specs = st.builds(
    Spec,
    sector=st.sampled_from("abc"),
    amount=st.sampled_from([50, 100, 150]),
    approved=st.booleans(),
    cost=st.one_of(st.none(), st.integers(0, 3)),
    subject=st.one_of(st.none(), st.sampled_from(["s1", "s2", "s3", "s4"])),
    trace=st.one_of(st.none(), st.sampled_from(["a" * 32, "b" * 32])),
    calls=st.integers(0, 3),
)
steps = st.one_of(
    st.tuples(
        st.just("batch"),
        st.lists(specs, min_size=1, max_size=5),
        st.integers(0, 7),  # seconds the clock moves before the batch
        st.booleans(),  # appended by the second ledger object
    ),
    st.tuples(st.just("restart"), st.just([]), st.just(0), st.just(False)),
)


@pytest.fixture
def sqlite_pair(tmp_path: Path) -> Iterator[tuple[Ledger, Ledger]]:
    engine = make_engine(str(tmp_path / "ledger.db"))
    first = Ledger.init(engine, tmp_path / "key", TEST_ORIGIN)
    second = Ledger.open(make_engine(str(tmp_path / "ledger.db")), tmp_path / "key")
    yield first, second
    second.close()
    first.close()


@pytest.fixture
def postgres_pair(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Ledger, Ledger]]:
    first = Ledger.init(make_engine(postgres_url), tmp_path / "key", TEST_ORIGIN)
    second = Ledger.open(make_engine(postgres_url), tmp_path / "key")
    yield first, second
    second.close()
    first.close()


def run(
    pair: tuple[Ledger, Ledger],
    program: list[tuple[str, list[Spec], int, bool]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = pair
    tenant = f"t{next(_tenants)}"
    register_tenant(first.engine, tenant)
    with first.engine.connect() as connection:
        # Examples share the database: the clock goes on from its last entry.
        clock = [max(BASE_US, read_head(connection).last_integrated_us)]
    # The ledger's clock, moved by the program; nothing else of the sequencer is replaced.
    monkeypatch.setattr(sequencer, "now_micros", lambda: clock[0])
    applied = first.apply_monitors(monitors_for(tenant), applied_by="test")
    record_index = {}
    for planned, result in applied:
        assert isinstance(result, Receipt)
        record_index[planned.definition.id] = result.index
    definitions = {d.id: d for d in monitors_for(tenant)}
    numbers = itertools.count()
    for kind, batch, advance, by_second in program:
        if kind == "restart":
            first.monitors = LiveMonitors(first.replay_signer.sign_breach)  # type: ignore[union-attr]
            continue
        clock[0] += advance * 1_000_000
        envelopes = [
            loan(
                tenant,
                f"d{next(numbers)}",
                sector=s.sector,
                amount=str(s.amount),
                approved=s.approved,
                cost=None if s.cost is None else str(s.cost),
                subject=s.subject,
                trace=s.trace,
                calls=s.calls,
            )
            for s in batch
        ]
        results = (second if by_second else first).append(envelopes)
        decisions = logged_decisions(first.engine, tenant)
        for result in results:
            assert not isinstance(result, RecordRejected), result
            for reading in result.monitors or []:
                monitor = definitions[reading.monitor]
                value, counted = oracle_value(
                    monitor,
                    decisions,
                    after=record_index[reading.monitor],
                    upto=result.index,
                    now_us=to_micros(datetime.fromisoformat(result.integrated_at)),
                    group=reading.group or "",
                )
                assert Decimal(reading.value) == value, (reading, value)
                assert reading.count == counted, (reading, counted)
                over = counted >= monitor.min_count and value > Decimal(monitor.limit)
                assert reading.breached == over, (reading, value)
    check_breaches(first, definitions, record_index)
    # The registry, breaches and flagged decisions, rebuilt from the log alone, are the
    # ones the sequencers wrote.
    with first.engine.connect() as connection, connection.begin() as transaction:
        rebuilt = rebuild_monitors(connection)
        transaction.rollback()
    assert rebuilt.consistent, (rebuilt.missing, rebuilt.unexpected)


def check_breaches(
    ledger: Ledger, definitions: dict[str, MonitorDefinition], record_index: dict[str, int]
) -> None:
    """Breach records alternate per (monitor, group), starting with `breached`, and each
    value is what the oracle computes over the window the record names."""
    with ledger.engine.connect() as connection:
        entries = read_entries(connection, 0, read_head(connection).size)
    tenant = next(iter(definitions.values())).tenant
    decisions = logged_decisions(ledger.engine, tenant)
    last_state: dict[tuple[str, str], str] = {}
    for entry in entries:
        if entry.payload_type != BREACH_PAYLOAD_TYPE or entry.tenant != tenant:
            continue
        breach = decode_breach(dsse.payload_bytes(dsse.decode_envelope(entry.envelope)))
        key = (breach.monitor.monitor_id, breach.group or "")
        assert last_state.get(key, "cleared") != breach.state, breach
        last_state[key] = breach.state
        monitor = definitions[breach.monitor.monitor_id]
        value, counted = oracle_value(
            monitor,
            decisions,
            after=record_index[monitor.id],
            upto=breach.window.last,
            now_us=to_micros(breach.window.end),
            group=breach.group or "",
        )
        assert Decimal(breach.value) == value, (breach, value, counted, decisions)
        assert breach.count == counted
        over = counted >= monitor.min_count and value > Decimal(monitor.limit)
        assert over == (breach.state == "breached"), breach


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=st.lists(steps, min_size=1, max_size=8))
def test_readings_equal_a_recomputation_from_the_log_on_sqlite(
    sqlite_pair: tuple[Ledger, Ledger],
    program: list[tuple[str, list[Spec], int, bool]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run(sqlite_pair, program, monkeypatch)


@pytest.mark.postgres
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=st.lists(steps, min_size=1, max_size=6))
def test_readings_equal_a_recomputation_from_the_log_on_postgres(
    postgres_pair: tuple[Ledger, Ledger],
    program: list[tuple[str, list[Spec], int, bool]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run(postgres_pair, program, monkeypatch)
