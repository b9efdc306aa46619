"""The microloans demo: a sector-concentration monitor applied, loans appended through the
real ingest path, and the breach placed at the decision where a sector's share of the
approved exposure first exceeds the limit, recomputed here from the loans and the log."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal, localcontext
from pathlib import Path

from ledger.ledger import Ledger
from ledger.log.store import read_entry
from ledger.records import dsse
from ledger.records.monitor import BREACH_PAYLOAD_TYPE, decode_breach
from service.demo.microloans import (
    LIMIT,
    MONITOR_ID,
    loan_decisions,
    loan_envelopes,
    run_microloans,
)
from tests.http_helpers import SQLITE_ONLY
from tests.support import prov

COUNT = 3000
MIN_COUNT = 300
SEED = 5


def share(part: Decimal, total: Decimal) -> Decimal:
    """As the ledger writes a share: to 18 places, rounded down."""
    with localcontext() as context:
        context.prec = 60
        return (part / total).quantize(Decimal(1).scaleb(-18), rounding=ROUND_DOWN)


@SQLITE_ONLY
def test_the_breach_is_at_the_first_decision_over_the_limit(ledger: Ledger) -> None:
    run = run_microloans(
        ledger, COUNT, seed=SEED, tenant="acme", min_count=MIN_COUNT, keep_receipts=True
    )
    assert (run.sent, run.rejected, run.monitor_version) == (COUNT, 0, 1)
    assert run.crossing is not None
    assert run.crossing_index is not None
    assert run.breach_index is not None
    loans = {d.id: d for d in loan_decisions(COUNT, seed=SEED, tenant="acme")}
    assert [r.id for r in run.receipts] == list(loans)

    # Recompute, in log order, every approved loan's sector share of the window (all of
    # the run: it lasts far less than the monitor's hour).
    limit = Decimal(LIMIT)
    sums: dict[str, Decimal] = {}
    total = Decimal(0)
    counted = 0
    first_over: tuple[int, str, Decimal] | None = None
    later = 0
    for receipt in sorted(run.receipts, key=lambda r: r.index):
        decision = loans[receipt.id]
        if not decision.output.decision["approved"]:
            assert not receipt.monitors  # a declined loan counts toward nothing
            continue
        [exposure] = decision.exposures
        sums[exposure.group] = sums.get(exposure.group, Decimal(0)) + exposure.amount
        total += exposure.amount
        counted += 1
        value = share(sums[exposure.group], total)
        [reading] = receipt.monitors or []
        assert (reading.group, Decimal(reading.value), reading.count) == (
            exposure.group,
            value,
            counted,
        )
        over = counted >= MIN_COUNT and value > limit
        assert reading.breached == over
        if over and first_over is None:
            first_over = (receipt.index, exposure.group, value)
        elif over and first_over is not None and exposure.group == first_over[1]:
            later += 1
    assert first_over is not None
    index, group, value = first_over
    assert (run.crossing_index, run.crossing.group) == (index, group)
    assert group == "sector:crypto-mining"
    assert Decimal(run.crossing.value) == value
    assert run.later_breached == later
    assert COUNT // 4 < index < 3 * COUNT // 4  # around the middle of the run

    # The breach record sits right after the decision that crossed, naming it.
    assert run.breach_index == index + 1
    with ledger.engine.connect() as connection:
        entry = read_entry(connection, run.breach_index)
    assert entry is not None
    assert entry.payload_type == BREACH_PAYLOAD_TYPE
    breach = decode_breach(dsse.payload_bytes(dsse.decode_envelope(entry.envelope)))
    assert breach.monitor.monitor_id == MONITOR_ID
    assert breach.state == "breached"
    assert breach.decision is not None
    assert (breach.decision.id, breach.decision.index) == (run.crossing_id, index)
    assert (breach.group, Decimal(breach.value)) == (group, value)


def test_a_seed_gives_the_same_loans() -> None:
    assert list(loan_envelopes(40, seed=9, tenant="acme")) == list(
        loan_envelopes(40, seed=9, tenant="acme")
    )
    assert list(loan_envelopes(40, seed=9, tenant="acme")) != list(
        loan_envelopes(40, seed=10, tenant="acme")
    )
    amounts = [d.exposures[0].amount for d in loan_decisions(500, seed=1, tenant="acme")]
    assert min(amounts) >= 500
    assert max(amounts) <= 5000


def test_prov_demo_microloans_prints_the_breach(tmp_path: Path) -> None:
    db, key = f"sqlite:///{tmp_path}/demo.db", tmp_path / "ledger.key"
    assert prov(["init"], db=db, key=key).code == 0
    done = prov(
        ["demo", "--scenario", "microloans", "--records", "1000", "--seed", "3"], db=db, key=key
    )
    assert done.code == 0, done.err
    lines = done.out.splitlines()
    assert lines[0].startswith("sent 1000 loan decisions in ")
    assert "monitor sector-concentration v1 at log index 0" in lines[0]
    assert lines[1].startswith("breach record at log index ")
    assert "sector:crypto-mining reached 0.25" in lines[1]
    assert lines[2].startswith("crossed by decision microloan-3-")
    assert lines[3].endswith("later answers said breached")
