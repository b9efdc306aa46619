"""Monitors stay exact across processes: two `prov serve` servers, each with two worker
processes, on one PostgreSQL ledger, take loans from concurrent clients; the breaches land
at the same decisions, with the same values, as when one process sequences the same loans
in the same log order (docs/monitors.md, "Evaluation").

Four sequencers (two servers by two workers) share the log and each keeps its own windows,
caught up under the log's lock on what the others appended. The single-process reference is
an embedded ledger fed the decisions in the order the shared log holds them.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ledger.ledger import Ledger
from ledger.log.store import read_entries, read_head
from ledger.monitors.apply import parse_definitions
from ledger.records import dsse
from ledger.records.decision import DECISION_PAYLOAD_TYPE
from ledger.records.monitor import BREACH_PAYLOAD_TYPE, decode_breach
from ledger.storage.db import make_engine
from tests.conftest import TEST_ORIGIN
from tests.http_server import Server, free_port, prepared_server
from tests.monitor_support import loan, register_tenant

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
TENANT = "acme"
MONITOR = {
    "id": "concentration",
    "tenant": TENANT,
    "aggregate": "share",
    "unit": "USD",
    "group_by": "group",
    "window": "1h",
    "limit": "0.3",
    "min_count": 20,
    "action": "flag",
    "select": {"group": "sector:*", "where": ["output.decision.approved == true"]},
}


def loans(count: int) -> list[bytes]:
    """Loans whose sector `a` drifts up, then down, so its share crosses and returns."""
    rng = random.Random(15)
    made = []
    for number in range(count):
        # a: 10% of the first quarter, 80% of the second, none after; over the whole log
        # its share reaches about 45% at the half and falls to about 22% by the end.
        drift = 0.1 if number < count // 4 else 0.8 if number < count // 2 else 0.0
        sector = "a" if rng.random() < drift else rng.choice("bcdef")
        made.append(
            loan(TENANT, f"p{number:04d}", sector=sector, amount=str(rng.randrange(1, 9) * 50))
        )
    return made


def breaches_in(ledger_engine: object) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """(crossing decision id, group, state, value) of each breach, and the decision ids, in
    log order."""
    with ledger_engine.connect() as connection:  # type: ignore[attr-defined]
        entries = read_entries(connection, 0, read_head(connection).size)
    decisions = {}
    breaches: list[tuple[str, str, str, str]] = []
    order = []
    for entry in entries:
        if entry.tenant != TENANT:
            continue
        if entry.payload_type == DECISION_PAYLOAD_TYPE:
            decisions[entry.index] = entry.record_id
            order.append(entry.record_id)
        elif entry.payload_type == BREACH_PAYLOAD_TYPE:
            breach = decode_breach(dsse.payload_bytes(dsse.decode_envelope(entry.envelope)))
            assert breach.decision is not None  # a 1h window never expires in this test
            # Placed right after the decision that crossed.
            assert (
                breach.decision.index == entry.index - 1 or decisions.get(entry.index - 1) is None
            )
            breaches.append((breach.decision.id, breach.group or "", breach.state, breach.value))
    return breaches, order


def test_four_sequencers_breach_where_one_would(postgres_url: str, tmp_path: Path) -> None:
    first = prepared_server(postgres_url, tmp_path, PROV_WORKERS="2")
    second = Server(
        postgres_url,
        first.key_file,
        tmp_path / "second.log",
        first.admin_key,
        port=free_port(),
        extra_env={"PROV_WORKERS": "2"},
    )
    register_tenant(make_engine(postgres_url), TENANT)
    envelopes = loans(600)
    try:
        first.start()
        second.start()
        applied = httpx.post(
            f"{first.url}/v1/monitors",
            json={"monitor": [MONITOR]},
            headers=first.auth(first.admin_key),
            timeout=30,
        )
        assert applied.status_code == 200, applied.text
        ingest = first.api_key("ingest")
        urls = [first.url, second.url]

        def send(part: int) -> None:
            with httpx.Client(headers=Server.auth(ingest), timeout=60) as http:
                for start in range(part * 10, len(envelopes), 80):
                    chunk = envelopes[start : start + 10]
                    answer = http.post(
                        f"{urls[(start // 10) % 2]}/v1/records/batch",
                        content=b"[" + b",".join(chunk) + b"]",
                    )
                    assert answer.status_code == 200, answer.text

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, range(8)))
    finally:
        second.stop()
        first.stop()
    shared, order = breaches_in(make_engine(postgres_url))
    assert len(order) == len(envelopes)
    assert any(state == "breached" for _, _, state, _ in shared)
    assert any(state == "cleared" for _, _, state, _ in shared)

    # One process, the same decisions in the same log order.
    by_id = {f"p{number:04d}": raw for number, raw in enumerate(envelopes)}
    reference = Ledger.init(
        make_engine(str(tmp_path / "one.db")), tmp_path / "one.key", TEST_ORIGIN
    )
    register_tenant(reference.engine, TENANT)

    reference.apply_monitors(parse_definitions({"monitor": [MONITOR]}), applied_by="test")
    for start in range(0, len(order), 7):
        reference.append([by_id[record_id] for record_id in order[start : start + 7]])
    alone, _ = breaches_in(reference.engine)
    reference.close()
    assert shared == alone
