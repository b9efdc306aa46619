"""Decision search on both engines: every filter against a brute-force reading of the signed
payloads, cursor pagination, tenant scoping, malformed input, and the index migration."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from alembic import command
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from ledger.errors import BadRequest
from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.records import dsse
from ledger.records.decision import Decision, decode_decision
from ledger.storage.migrate import _alembic_config, migrate
from ledger.storage.schema import decisions
from query.audit.search import (
    DecisionFilter,
    OutputMatch,
    decode_cursor,
    encode_cursor,
    search,
)
from tests.support import demo_envelopes

COUNT = 45


@pytest.fixture
def stored(ledger: Ledger) -> list[Decision]:
    """The decisions of two tenants, appended; returned newest first, as search lists them."""
    records = demo_envelopes(ledger.engine, COUNT, seed=11) + demo_envelopes(
        ledger.engine, 9, seed=12, tenant="globex"
    )
    assert all(isinstance(result, Receipt) for result in ledger.append(records))
    payloads = [dsse.payload_bytes(dsse.decode_envelope(raw)) for raw in records]
    return [decode_decision(payload) for payload in reversed(payloads)]


def run(ledger: Ledger, where: DecisionFilter, limit: int = 500) -> list[str]:
    with ledger.engine.connect() as connection:
        return [item.id for item in search(connection, where, limit=limit).decisions]


def expected(stored: list[Decision], keep: Callable[[Decision], bool]) -> list[str]:
    return [d.id for d in stored if d.tenant == "acme" and keep(d)]


def test_each_filter_finds_exactly_the_matching_decisions(
    ledger: Ledger, stored: list[Decision]
) -> None:
    acme = [d for d in stored if d.tenant == "acme"]
    middle = sorted(d.occurred_at for d in acme)[len(acme) // 2]
    loan = next(d for d in acme if d.decision_type == "loan.approve")
    cases: list[tuple[DecisionFilter, Callable[[Decision], bool]]] = [
        (DecisionFilter("acme"), lambda d: True),
        (
            DecisionFilter("acme", service="loan-underwriter"),
            lambda d: d.service == "loan-underwriter",
        ),
        (
            DecisionFilter("acme", decision_type="payment.retry"),
            lambda d: d.decision_type == "payment.retry",
        ),
        (DecisionFilter("acme", model=loan.model.name), lambda d: d.model.name == loan.model.name),
        (
            DecisionFilter("acme", model=loan.model.name, model_version=loan.model.version),
            lambda d: (d.model.name, d.model.version) == (loan.model.name, loan.model.version),
        ),
        (DecisionFilter("acme", occurred_from=middle), lambda d: d.occurred_at >= middle),
        (DecisionFilter("acme", occurred_to=middle), lambda d: d.occurred_at < middle),
        (
            # A time without an offset is UTC.
            DecisionFilter("acme", occurred_from=middle.replace(tzinfo=None)),
            lambda d: d.occurred_at >= middle,
        ),
        (DecisionFilter("acme", subject=loan.subject), lambda d: d.subject == loan.subject),
        (
            DecisionFilter("acme", delegator=loan.delegation[0].iss),
            lambda d: bool(d.delegation) and d.delegation[0].iss == loan.delegation[0].iss,
        ),
        (
            DecisionFilter("acme", output=OutputMatch.parse("approved=true")),
            lambda d: d.output.decision.get("approved") is True,
        ),
        (
            DecisionFilter("acme", output=OutputMatch.parse("approved=false")),
            lambda d: d.output.decision.get("approved") is False,
        ),
        (
            DecisionFilter(
                "acme",
                decision_type="order.route",
                output=OutputMatch.parse("carrier=UPS"),
            ),
            lambda d: (
                d.decision_type == "order.route" and d.output.decision.get("carrier") == "UPS"
            ),
        ),
        (
            DecisionFilter("acme", output=OutputMatch.parse("days=2")),
            lambda d: d.output.decision.get("days") == 2,
        ),
        (
            DecisionFilter("acme", occurred_from=middle, occurred_to=middle + timedelta(hours=1)),
            lambda d: middle <= d.occurred_at < middle + timedelta(hours=1),
        ),
    ]
    for where, keep in cases:
        want = expected(stored, keep)
        assert run(ledger, where) == want, where
    # The cases are not vacuous: each of these matches some decisions and not all.
    for where, keep in cases[1:4] + cases[10:13]:
        assert 0 < len(expected(stored, keep)) < COUNT, where


def test_newest_decisions_come_first_whatever_order_they_were_appended(ledger: Ledger) -> None:
    records = demo_envelopes(ledger.engine, 3, seed=13, tenant="initech")
    assert all(isinstance(r, Receipt) for r in ledger.append(records[::-1]))  # newest first
    ids = [decode_decision(dsse.payload_bytes(dsse.decode_envelope(raw))).id for raw in records]
    assert run(ledger, DecisionFilter("initech")) == ids[::-1]
    with ledger.engine.connect() as connection:
        first = search(connection, DecisionFilter("initech"), limit=2)
        assert first.next_cursor is not None
        rest = search(connection, DecisionFilter("initech"), cursor=first.next_cursor)
    assert [d.id for d in first.decisions + rest.decisions] == ids[::-1]


def test_pages_follow_the_cursor_without_gaps_or_repeats(
    ledger: Ledger, stored: list[Decision]
) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    with ledger.engine.connect() as connection:
        while True:
            page = search(connection, DecisionFilter("acme"), cursor=cursor, limit=7)
            seen += [item.id for item in page.decisions]
            pages += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    assert seen == expected(stored, lambda d: True)
    assert pages == -(-COUNT // 7)


def test_a_summary_carries_the_indexed_fields(ledger: Ledger, stored: list[Decision]) -> None:
    with ledger.engine.connect() as connection:
        [item] = search(connection, DecisionFilter("acme"), limit=1).decisions
    newest = stored[9]  # the nine globex decisions were appended last
    assert item.id == newest.id
    assert item.output == msgspec.json.decode(msgspec.json.encode(newest.output.decision))
    assert item.service == newest.service
    assert item.model_version == newest.model.version
    assert item.index == COUNT - 1


def test_another_tenant_sees_only_its_own(ledger: Ledger, stored: list[Decision]) -> None:
    assert run(ledger, DecisionFilter("globex")) == [d.id for d in stored if d.tenant == "globex"]
    assert run(ledger, DecisionFilter("initech")) == []


@pytest.mark.parametrize("text", ["approved", "=true", "a..b=1", "a b=1", "1abc=2", "a/b=3"])
def test_a_malformed_output_match_is_a_bad_request(text: str) -> None:
    with pytest.raises(BadRequest) as raised:
        OutputMatch.parse(text)
    assert raised.value.pointer == "/output"


def test_limits_are_checked(ledger: Ledger) -> None:
    with ledger.engine.connect() as connection:
        for limit in (0, 501):
            with pytest.raises(BadRequest):
                search(connection, DecisionFilter("acme"), limit=limit)


@given(st.integers(min_value=-(2**62), max_value=2**62), st.integers(0, 2**63 - 1))
def test_cursors_round_trip(occurred_us: int, index: int) -> None:
    assert decode_cursor(encode_cursor(occurred_us, index)) == (occurred_us, index)


@given(st.text(max_size=40))
def test_a_foreign_cursor_is_a_bad_request_never_a_crash(text: str) -> None:
    outcome: int | BadRequest
    try:
        outcome = decode_cursor(text)
    except BadRequest as error:
        outcome = error
    if isinstance(outcome, BadRequest):
        assert outcome.pointer == "/cursor"
    else:  # only a cursor this service could have issued decodes
        assert encode_cursor(*outcome) == text.rstrip("=")


@given(
    st.lists(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=4),
    st.one_of(
        st.booleans(),
        st.integers(),
        # Text the stores can compare: NUL and lone surrogates are refused (test above).
        st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=12),
        st.none(),
    ),
)
def test_output_matches_parse_paths_and_json_values(path: list[str], value: Any) -> None:
    match = OutputMatch.parse(".".join(path) + "=" + msgspec.json.encode(value).decode())
    assert match.path == tuple(path)
    assert match.value == value


def test_the_migration_indexes_decisions_already_in_the_log(
    ledger: Ledger, stored: list[Decision]
) -> None:
    with ledger.engine.connect() as connection:
        before = connection.execute(select(decisions).order_by(decisions.c.idx)).all()
    with ledger.engine.begin() as connection:
        command.downgrade(_alembic_config(connection), "0002")
    migrate(ledger.engine)  # upgrades, and backfills the dropped index from the log
    with ledger.engine.connect() as connection:
        after = connection.execute(select(decisions).order_by(decisions.c.idx)).all()
        assert connection.execute(select(func.count()).select_from(decisions)).scalar() == len(
            stored
        )
    assert after == before


def test_a_filter_from_query_text_is_the_typed_one() -> None:
    text = {"service": "svc", "from": "2025-06-02T09:36:00Z", "to": "", "output": "days=2"}
    assert DecisionFilter.from_query("acme", text) == DecisionFilter(
        "acme",
        service="svc",
        occurred_from=datetime(2025, 6, 2, 9, 36, tzinfo=UTC),
        output=OutputMatch(("days",), 2),
    )
    for bad in ({"colour": "red"}, {"from": "yesterday"}, {"output": "x"}):
        with pytest.raises(BadRequest) as raised:
            DecisionFilter.from_query("acme", bad)
        assert raised.value.pointer == "/" + next(iter(bad))
