"""Monitors on the read side, on both engines: the query functions over the monitor indexes,
`prov monitor status`, and `GET /v1/monitors`, `/v1/monitors/{id}` and `/v1/breaches/{id}`
against a real `prov serve`, after a concentration monitor breached, cleared and breached
again, with one decision per batch so that every batch leaves a sample."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import Connection

from ledger.errors import NotFound, RecordRejected
from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.records import dsse
from ledger.records.monitor import decode_breach
from ledger.storage.db import make_engine
from query.audit.monitors import (
    breach_detail,
    breaches_of,
    list_monitors,
    monitor_history,
    monitor_versions,
    window_decisions,
)
from tests.http_server import TENANT, Server
from tests.monitor_support import definition, loan, register_tenant
from tests.support import prov

OTHER = "beta"
# Sectors of the loans, one per batch: `a`'s share of the approved amounts crosses 0.5 at
# the third decision (min_count 3), returns to 0.5 at the fourth, and crosses again.
SECTORS = ["b", "a", "a", "b", "a", "a", "a", "a"]
CONCENTRATION = definition(
    TENANT,
    "conc",
    aggregate="share",
    unit="USD",
    group_by="group",
    window="1h",
    limit="0.5",
    min_count=3,
    action="flag",
    description="no sector over half of approved exposure",
    select={"group": "sector:*", "where": ["output.decision.approved == true"]},
)
VOLUME = definition(TENANT, "volume", aggregate="count", window="1h", limit="100")


@dataclass
class Built:
    receipts: list[Receipt]

    def breach_indexes(self) -> list[int]:
        return [
            reading.breach
            for receipt in self.receipts
            for reading in receipt.monitors or []
            if reading.breach is not None
        ]


def build(ledger: Ledger) -> Built:
    register_tenant(ledger.engine, TENANT)
    register_tenant(ledger.engine, OTHER)
    for _, result in ledger.apply_monitors(
        [
            CONCENTRATION,
            VOLUME,
            definition(OTHER, "hidden", aggregate="count", window="1h", limit="1"),
        ],
        applied_by="test",
    ):
        assert not isinstance(result, RecordRejected), result
    receipts = []
    for number, sector in enumerate(SECTORS):
        [result] = ledger.append([loan(TENANT, f"loan-{number}", sector=sector)])
        assert isinstance(result, Receipt), result
        receipts.append(result)
    return Built(receipts)


@pytest.fixture
def served(server: Server) -> Iterator[tuple[Server, Built]]:
    """The test's server, with the monitors applied and the loans appended through the
    ledger in this process (the server's windows catch up from the log)."""
    engine = make_engine(server.db_url)
    ledger = Ledger.open(engine, server.key_file)
    try:
        yield server, build(ledger)
    finally:
        ledger.close()
        engine.dispose()


def test_the_query_functions(ledger: Ledger) -> None:
    built = build(ledger)
    with ledger.engine.connect() as connection:
        check_queries(connection, built)


@pytest.mark.slow  # a served ledger, and the CLI run in its own processes
def test_the_cli_and_the_http_routes(served: tuple[Server, Built]) -> None:
    server, _ = served
    check_cli(server)
    check_http(server)


def check_queries(connection: Connection, built: Built) -> None:
    found = {summary.monitor_id: summary for summary in list_monitors(connection, TENANT)}
    assert set(found) == {"conc", "volume"}  # not the other tenant's
    conc = found["conc"]
    assert conc.definition == CONCENTRATION
    assert conc.version == 1
    assert conc.applied_by == "test"
    states = {group.group: group for group in conc.groups}
    assert set(states) == {"sector:a", "sector:b"}
    # 6 of 8 approved loans of 100 USD are sector a.
    assert states["sector:a"].value == "0.75"
    assert states["sector:a"].breached
    assert states["sector:a"].count == len(SECTORS)
    # Every group of a share is sampled whenever a batch moves the total: b's 2 of 8.
    assert states["sector:b"].value == "0.25"
    assert not states["sector:b"].breached
    assert states["sector:b"].count == len(SECTORS)
    assert conc.breached
    volume = found["volume"]
    assert [(g.group, g.value, g.breached) for g in volume.groups] == [(None, "8", False)]
    assert list_monitors(connection, TENANT, "nope") == []
    assert [v.version for v in monitor_versions(connection, TENANT, "conc")] == [1]

    history = monitor_history(connection, TENANT, "conc")
    assert history.limit == "0.5"
    series = {s.group: s for s in history.series}
    a_points = series["sector:a"].points
    # One point per batch from a's first loan on: every batch moves each group's share.
    assert series["sector:a"].total == len(a_points) == len(SECTORS) - SECTORS.index("a")
    assert [p.index for p in a_points] == sorted(p.index for p in a_points)
    assert a_points[-1].value == 0.75
    thinned = monitor_history(connection, TENANT, "conc", max_points=2)
    kept = {s.group: s.points for s in thinned.series}["sector:a"]
    assert len(kept) < len(a_points)
    # Thinning keeps the last sample and every crossing.
    assert kept[-1] == a_points[-1]
    flips = [p for before, p in itertools.pairwise(a_points) if p.breached != before.breached]
    assert all(p in kept for p in flips)

    breaches = breaches_of(connection, TENANT, "conc")
    assert [b.state for b in breaches] == ["breached", "cleared", "breached"]
    # A receipt names every breach record its decision caused, a clearing of another
    # group's share included.
    assert [b.index for b in breaches] == sorted(built.breach_indexes(), reverse=True)
    assert breaches_of(connection, OTHER) == []
    first = breaches[-1]
    detail = breach_detail(connection, TENANT, first.record_id)
    assert detail.index == first.index
    record = detail.record
    assert record.state == "breached"
    assert record.group == "sector:a"
    assert record.value.startswith("0.666666")
    assert record.limit == "0.5"
    assert record.count == 3
    assert record.decision is not None
    assert record.decision.id == "loan-2"
    assert record.decision.index == record.window.last
    envelope = dsse.decode_envelope(dsse.b64decode(detail.envelope))
    assert decode_breach(dsse.payload_bytes(envelope)) == record
    with pytest.raises(NotFound):
        breach_detail(connection, OTHER, first.record_id)

    page = window_decisions(connection, TENANT, record.window.first, record.window.last, limit=2)
    assert [d.record_id for d in page.decisions] == ["loan-0", "loan-1"]
    assert page.next_after is not None
    rest = window_decisions(
        connection, TENANT, record.window.first, record.window.last, after=page.next_after, limit=2
    )
    assert [d.record_id for d in rest.decisions] == ["loan-2"]
    assert rest.next_after is None


def check_cli(server: Server) -> None:
    table = prov(["monitor", "status", "--tenant", TENANT], db=server.db_url, key=server.key_file)
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].split() == [
        "monitor",
        "version",
        "group",
        "value",
        "limit",
        "count",
        "breached",
        "as",
        "of",
    ]
    rows = {tuple(line.split()[:3]): line.split() for line in lines[1:]}
    assert rows[("conc", "v1", "sector:a")][3:7] == ["0.75", "0.5", "8", "BREACHED"]
    assert rows[("conc", "v1", "sector:b")][3:7] == ["0.25", "0.5", "8", "no"]
    assert rows[("volume", "v1", "-")][3:7] == ["8", "100", "8", "no"]

    as_json = prov(
        ["monitor", "status", "--tenant", TENANT, "--monitor", "conc", "--json"],
        db=server.db_url,
        key=server.key_file,
    )
    assert as_json.code == 0, as_json.err
    parsed = [json.loads(line) for line in as_json.out.splitlines()]
    assert [(p["monitor"], p["group"], p["breached"]) for p in parsed] == [
        ("conc", "sector:a", True),
        ("conc", "sector:b", False),
    ]
    assert parsed[0]["value"] == "0.75"
    assert parsed[0]["as_of"].endswith("Z")

    none = prov(["monitor", "status", "--tenant", "gamma"], db=server.db_url, key=server.key_file)
    assert none.code == 0
    assert none.out == ""
    assert "no monitor" in none.err


def check_http(server: Server) -> None:
    audit = server.auth(server.api_key("audit"))
    listed = httpx.get(f"{server.url}/v1/monitors", params={"tenant": TENANT}, headers=audit)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["tenant"] == TENANT
    assert [m["monitor_id"] for m in body["monitors"]] == ["conc", "volume"]
    conc = body["monitors"][0]
    assert conc["breached"] is True
    assert conc["definition"]["limit"] == "0.5"
    assert {g["group"]: g["value"] for g in conc["groups"]} == {
        "sector:a": "0.75",
        "sector:b": "0.25",
    }
    only = httpx.get(f"{server.url}/v1/monitors", params={"monitor": "volume"}, headers=audit)
    assert [m["monitor_id"] for m in only.json()["monitors"]] == ["volume"]
    other = httpx.get(f"{server.url}/v1/monitors", params={"tenant": OTHER}, headers=audit)
    assert other.status_code == 404, other.text

    one = httpx.get(f"{server.url}/v1/monitors/conc", headers=audit)
    assert one.status_code == 200, one.text
    answer = one.json()
    assert answer["monitor"]["version"] == 1
    assert [v["version"] for v in answer["versions"]] == [1]
    assert [b["state"] for b in answer["breaches"]] == ["breached", "cleared", "breached"]
    older = httpx.get(
        f"{server.url}/v1/monitors/conc",
        params={"before": answer["breaches"][0]["index"], "limit": 1},
        headers=audit,
    )
    assert [b["state"] for b in older.json()["breaches"]] == ["cleared"]
    assert httpx.get(f"{server.url}/v1/monitors/hidden", headers=audit).status_code == 404

    breach_id = answer["breaches"][-1]["record_id"]
    breach = httpx.get(f"{server.url}/v1/breaches/{breach_id}", headers=audit)
    assert breach.status_code == 200, breach.text
    shown = breach.json()
    assert shown["index"] == answer["breaches"][-1]["index"]
    assert shown["record"]["decision"]["id"] == "loan-2"
    assert shown["record"]["window"]["last"] == shown["record"]["decision"]["index"]
    # The entry the API serves is the one the breach names.
    entry = httpx.get(f"{server.url}/v1/entries/{shown['index']}", headers=audit).json()
    assert entry["leaf_hash"] == shown["leaf_hash"], entry
    elsewhere = server.auth(server.api_key("audit", OTHER))
    assert httpx.get(f"{server.url}/v1/breaches/{breach_id}", headers=elsewhere).status_code == 404
    assert httpx.get(f"{server.url}/v1/monitors/conc", headers=elsewhere).status_code == 404
    ingest = server.auth(server.api_key("ingest"))
    assert httpx.get(f"{server.url}/v1/monitors", headers=ingest).status_code == 403
