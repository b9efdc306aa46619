"""Monitors over HTTP, against a real `prov serve`: applying definitions with
`POST /v1/monitors` (admin keys only, each for its own tenant, bad ones refused with the
member at fault), the monitor readings in append answers and in the SDK (`.monitors`,
`.stop`, `raise_on_flag`), the signed `monitor.breach` webhook, and the /metrics series."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.client import AppendResult, Client, MonitorBreached, verify_webhook
from ingest.client._records import SignedRecord, sign_record
from ingest.client.errors import ProblemError
from ledger.records import dsse
from ledger.records.decision import Decision, Exposure, Model, Output
from ledger.records.monitor import BREACH_PAYLOAD_TYPE
from tests.http_helpers import assert_problem, metric, pointers, tree_size
from tests.http_server import TENANT, Server, prepared_server
from tests.monitor_support import SERVICE, T0, key_for
from tests.webhook_support import FAST_WEBHOOKS, Receiver, eventually

# Share of approved USD exposure per sector over 1h, over 50% once 3 decisions count.
MONITOR: dict[str, Any] = {
    "id": "conc",
    "tenant": TENANT,
    "select": {"group": "sector:*", "where": ["output.decision.approved == true"]},
    "aggregate": "share",
    "unit": "USD",
    "window": "1h",
    "group_by": "group",
    "limit": 0.5,
    "min_count": 3,
    "action": "flag",
}
MONITORS_TOML = f"""
[[monitor]]
id = "conc"
tenant = "{TENANT}"
aggregate = "share"
unit = "USD"
window = "1h"
group_by = "group"
limit = 0.5
min_count = 3
action = "flag"
select = {{ group = "sector:*", where = ["output.decision.approved == true"] }}
"""


def loan(record_id: str, sector: str, amount: str = "100") -> SignedRecord:
    """A signed approval exposing `amount` USD to `sector:<sector>`."""
    made = Decision(
        id=record_id,
        tenant=TENANT,
        service=SERVICE,
        decision_type="loan.approve",
        occurred_at=T0,
        inputs={"amount": amount},
        model=Model(provider="openai", name="gpt-test", version="2026-01-01"),
        output=Output(decision={"approved": True, "amount": float(amount)}),
        exposures=[Exposure(group=f"sector:{sector}", amount=Decimal(amount), unit="USD")],
    )
    return sign_record(made, key_for(TENANT))


def post_monitors(server: Server, key: str, body: object) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/monitors", json=body, headers=server.auth(key), timeout=30)


def register_loans_key(server: Server) -> None:
    answer = httpx.post(
        f"{server.url}/v1/keys",
        json={
            "service": SERVICE,
            "public_key": key_for(TENANT).public_key.hex(),
            "valid_from": "2000-01-01T00:00:00Z",
        },
        headers=server.auth(server.admin_key),
    )
    assert answer.status_code == 201, answer.text


def subscribe_breaches(server: Server, url: str) -> None:
    answer = httpx.post(
        f"{server.url}/v1/subscriptions",
        json={"url": url, "events": ["monitor.breach"]},
        headers=server.auth(server.admin_key),
    )
    assert answer.status_code == 201, answer.text


def client(server: Server, key: str, **options: Any) -> Client:
    return Client(server.url, key, key_for(TENANT), tenant=TENANT, service=SERVICE, **options)


def check_applying(server: Server, ingest: str) -> int:
    """The refusals first, each storing nothing; then the monitor, applied once."""
    size = tree_size(server)
    for role_key in (ingest, server.api_key("audit")):
        assert_problem(post_monitors(server, role_key, {"monitor": [MONITOR]}), 403)
    bad = assert_problem(
        post_monitors(server, server.admin_key, {"monitor": [MONITOR | {"window": "soon"}]}),
        422,
        "monitor-invalid",
    )
    assert pointers(bad) == ["/monitor/0/window"]
    unknown = assert_problem(
        post_monitors(server, server.admin_key, {"monitor": [MONITOR, MONITOR | {"cap": 1}]}),
        422,
        "monitor-invalid",
    )
    assert pointers(unknown)[0].startswith("/monitor/1")
    other = assert_problem(
        post_monitors(
            server,
            server.admin_key,
            {"monitor": [MONITOR | {"id": "b"}, MONITOR | {"tenant": "globex"}]},
        ),
        403,
        "tenant-mismatch",
    )
    assert pointers(other) == ["/monitor/1/tenant"]
    assert tree_size(server) == size  # nothing of a refused request was applied

    answer = post_monitors(server, server.admin_key, {"monitor": [MONITOR]})
    assert answer.status_code == 200, answer.text
    [applied] = answer.json()["monitors"]
    assert (applied["monitor"], applied["tenant"], applied["version"]) == ("conc", TENANT, 1)
    assert applied["status"] == "applied"
    assert applied["digest"].startswith("sha256:")
    assert applied["index"] == size
    # The same definition as TOML through the SDK (an admin key): unchanged, not re-applied.
    with client(server, server.admin_key) as admin:
        [again] = admin.apply_monitors(MONITORS_TOML)
        with pytest.raises(ProblemError) as refused:
            admin.apply_monitors({"monitor": [MONITOR | {"aggregate": "median"}]})
    assert (again["status"], again["version"], again["digest"]) == (
        "unchanged",
        1,
        applied["digest"],
    )
    assert refused.value.kind == "monitor-invalid"
    assert refused.value.errors[0].pointer == "/monitor/0/aggregate"
    return int(applied["index"])


def check_answers(server: Server, ingest: str) -> tuple[int, int]:
    """Appends through the SDK and raw HTTP; the crossing decision's index and its breach's."""
    with client(server, ingest, raise_on_flag=True) as sdk:
        first = sdk.append(loan("l0", "b"))
        second = sdk.append(loan("l1", "a"))
        with pytest.raises(MonitorBreached) as breached:
            sdk.append(loan("l2", "a"))
        # Small loans elsewhere from here on, so that sector:a stays over (no `cleared`).
        batch = sdk.append_batch([loan("l3", "a"), loan("l4", "b", "50")], raise_on_flag=False)
        with pytest.raises(MonitorBreached) as in_batch:
            sdk.append_batch([loan("l5", "b", "50"), loan("l6", "a")])
    assert isinstance(first, AppendResult)
    [reading] = first.monitors
    assert (reading.monitor, reading.version, reading.group) == ("conc", 1, "sector:b")
    assert (reading.value, reading.limit, reading.count, reading.breached) == ("1", "0.5", 1, False)
    assert (reading.aggregate, reading.action, reading.breach) == ("share", "flag", None)
    assert not first.stop
    assert not second.stop

    crossing = breached.value.result  # type: ignore[attr-defined]
    assert isinstance(crossing, AppendResult)
    assert crossing.id == "l2"
    assert crossing.stop
    [over] = crossing.monitors
    assert (over.group, over.value, over.breached) == ("sector:a", "0.666666666666666666", True)
    assert over.breach == crossing.index + 1  # the breach record follows the decision
    assert "l2" in str(breached.value)
    assert breached.value.kind == "monitor-breached"

    later, other = batch
    assert isinstance(later, AppendResult)
    assert isinstance(other, AppendResult)
    assert later.stop
    assert later.monitors[0].breach is None
    assert not other.stop
    assert in_batch.value.result.id == "l6"  # type: ignore[attr-defined]
    assert len(in_batch.value.results) == 2  # type: ignore[attr-defined]

    # The raw answers carry the readings too, single and batch.
    with httpx.Client(base_url=server.url, headers=server.auth(ingest), timeout=30) as http:
        single = http.post("/v1/records", content=loan("l7", "a").envelope)
        assert single.status_code == 201, single.text
        assert single.json()["monitors"][0]["breached"] is True
        many = http.post(
            "/v1/records/batch",
            content=b"[" + loan("l8", "c", "50").envelope + b"," + loan("l9", "a").envelope + b"]",
        )
        assert many.status_code == 200, many.text
        readings = [item["receipt"]["monitors"][0] for item in many.json()["results"]]
        assert [(r["group"], r["breached"]) for r in readings] == [
            ("sector:c", False),
            ("sector:a", True),
        ]
    return crossing.index, over.breach


def check_webhook(server: Server, receiver: Receiver, crossing: int, breach: int) -> None:
    [event] = eventually(lambda: receiver.answered(200), what="the breach event")
    key = httpx.get(f"{server.url}/v1/log", headers=server.auth(server.admin_key)).json()[
        "verifier_key"
    ]
    body = verify_webhook(event.body, event.headers.get("prov-signature"), key)
    assert body["type"] == event.headers["prov-event-type"] == "monitor.breach"
    assert body["id"] == event.headers["prov-event-id"]
    assert (body["tenant"], body["log"], body["index"]) == (TENANT, "prov.local/ledger", breach)
    record = body["breach"]
    assert (record["state"], record["group"], record["action"]) == ("breached", "sector:a", "flag")
    assert record["decision"]["id"] == "l2"
    assert record["decision"]["index"] == crossing
    assert record["monitor"]["monitor_id"] == "conc"
    assert record["value"] == "0.666666666666666666"
    envelope = dsse.decode_envelope(base64.b64decode(body["envelope"]))
    assert envelope.payloadType == BREACH_PAYLOAD_TYPE
    assert json.loads(dsse.payload_bytes(envelope)) == record
    tampered = event.body.replace(b'"sector:a"', b'"sector:z"', 1)
    with pytest.raises(Exception, match="does not verify"):
        verify_webhook(tampered, event.headers["prov-signature"], key)


def check_metrics(server: Server) -> None:
    text = httpx.get(f"{server.url}/metrics").text
    labels = {"tenant": TENANT, "monitor": "conc"}
    assert metric(text, "prov_monitor_value", **labels, group="sector:a") > 0.5
    assert metric(text, "prov_monitor_value", **labels, group="sector:c") < 0.5
    assert metric(text, "prov_monitor_breaches_total", **labels, state="breached") == 1
    assert metric(text, "prov_monitor_series_dropped") == 0


def test_monitors_over_http_the_sdk_webhooks_and_metrics(db_url: str, tmp_path: Path) -> None:
    server = prepared_server(db_url, tmp_path, **FAST_WEBHOOKS)
    with Receiver().running() as receiver:
        server.start()
        try:
            register_loans_key(server)
            subscribe_breaches(server, receiver.url)
            ingest = server.api_key("ingest")
            check_applying(server, ingest)
            crossing, breach = check_answers(server, ingest)
            check_webhook(server, receiver, crossing, breach)
            check_metrics(server)
        finally:
            server.stop()
    assert len(receiver.received) == 1  # one breach, one event
