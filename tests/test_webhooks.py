"""Webhooks end to end, on a real `prov serve` and a real receiver on loopback: each
`decision.stale` event arrives at least once, signed by the ledger key; a server killed
(kill -9) mid-delivery delivers after a restart; a receiver that keeps failing ends in
dead-letter, visible in the API and in /metrics, and a retry sends it again; bad input
stores nothing; only admin keys manage subscriptions, each its own tenant's."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from ingest.client import WebhookInvalid, verify_webhook
from ledger.storage.db import make_engine
from ledger.storage.schema import outbox, subscriptions
from tests.http_helpers import SQLITE_ONLY, assert_problem, metric, pointers
from tests.http_server import Server, prepared_server
from tests.webhook_support import (
    FAST_WEBHOOKS,
    STOCK_KEY,
    Receiver,
    eventually,
    make_stale,
    prepare_tenant,
    subscribe,
)


def verifier_key(server: Server) -> str:
    """The ledger's published verifier key, as a receiver pins it."""
    answer = httpx.get(f"{server.url}/v1/log", headers=server.auth(server.admin_key))
    assert answer.status_code == 200, answer.text
    key: str = answer.json()["verifier_key"]
    return key


def deliveries(server: Server, subscription_id: str, state: str | None = None) -> list[Any]:
    answer = httpx.get(
        f"{server.url}/v1/subscriptions/{subscription_id}/deliveries",
        params={} if state is None else {"state": state},
        headers=server.auth(server.admin_key),
    )
    assert answer.status_code == 200, answer.text
    found: list[Any] = answer.json()["deliveries"]
    return found


def scrape(server: Server) -> str:
    answer = httpx.get(f"{server.url}/metrics")
    assert answer.status_code == 200, answer.text
    return answer.text


def test_each_event_arrives_signed_by_the_ledger_key(db_url: str, tmp_path: Path) -> None:
    server = prepared_server(db_url, tmp_path, **FAST_WEBHOOKS)
    with Receiver().running() as receiver:
        server.start()
        try:
            ingest = prepare_tenant(server)
            subscription = subscribe(server, server.admin_key, receiver.url)
            made, change_index = make_stale(server, ingest, count=3, seed=11, change_id="chg-a")
            [event] = eventually(lambda: receiver.answered(200), what="the stale event")
            key = verifier_key(server)
            body = verify_webhook(event.body, event.headers["prov-signature"], key)

            assert body["type"] == "decision.stale"
            assert event.headers["prov-event-type"] == "decision.stale"
            assert event.headers["prov-event-id"] == body["id"]
            assert event.headers["content-type"] == "application/json"
            assert (body["log"], body["tenant"], body["more"]) == (
                "prov.local/ledger",
                "acme",
                False,
            )
            change = body["change"]
            assert (change["index"], change["id"]) == (change_index, "chg-a")
            assert (change["key"], change["version"]) == (STOCK_KEY, "v2")
            stale = [(item["id"], item["key"], item["version"]) for item in body["decisions"]]
            assert stale == [(decision.id, STOCK_KEY, "v1") for decision in made]
            assert [item["index"] for item in body["decisions"]] == [0, 1, 2]

            [row] = eventually(lambda: deliveries(server, subscription, "delivered"))
            assert body["id"] == f"{row['id']}-0"
            assert (row["change_index"], row["last_status"], row["delivered_through"]) == (
                change_index,
                200,
                2,
            )
            metrics = scrape(server)
            assert metric(metrics, "prov_webhook_outbox", state="delivered") == 1
            assert metric(metrics, "prov_webhook_outbox", state="pending") == 0
            assert metric(metrics, "prov_webhook_deliveries_total", outcome="delivered") == 1

            # One byte changed, and the receiver must refuse it.
            tampered = event.body.replace(b'"v1"', b'"v0"', 1)
            assert tampered != event.body
            with pytest.raises(WebhookInvalid, match="does not verify"):
                verify_webhook(tampered, event.headers["prov-signature"], key)
        finally:
            server.stop()
    assert len(receiver.received) == 1  # nothing was sent twice on a healthy path


def test_a_server_killed_mid_delivery_delivers_after_restart(db_url: str, tmp_path: Path) -> None:
    server = prepared_server(db_url, tmp_path, **FAST_WEBHOOKS)
    engine = make_engine(db_url)
    with Receiver().running() as receiver:
        receiver.status = 503
        receiver.hold()  # the first POST waits for its answer: the delivery is under way
        server.start()
        try:
            ingest = prepare_tenant(server)
            subscription = subscribe(server, server.admin_key, receiver.url)
            _, change_index = make_stale(server, ingest, count=2, seed=12, change_id="chg-b")
            eventually(receiver.waiting.is_set, what="a delivery under way")
            server.kill()  # kill -9 between the commit and any acknowledged delivery
            receiver.release()  # the held request is answered 503, to nobody
            with engine.connect() as connection:
                state, cursor = connection.execute(
                    select(outbox.c.state, outbox.c.cursor_idx)
                ).one()
            assert (state, cursor) == ("pending", -1)
            assert receiver.answered(200) == []

            receiver.status = 200
            server.start()
            [event] = eventually(lambda: receiver.answered(200), timeout=30, what="redelivery")
            body = verify_webhook(event.body, event.headers["prov-signature"], verifier_key(server))
            assert body["change"]["index"] == change_index
            assert len(body["decisions"]) == 2
            [row] = eventually(lambda: deliveries(server, subscription, "delivered"))
            assert body["id"] == f"{row['id']}-0"
        finally:
            server.stop()
            engine.dispose()


def test_a_failing_receiver_ends_in_dead_letter_and_retry_sends_again(
    db_url: str, tmp_path: Path
) -> None:
    server = prepared_server(db_url, tmp_path, **FAST_WEBHOOKS, PROV_WEBHOOK_MAX_ATTEMPTS="3")
    with Receiver().running() as receiver:
        receiver.status = 500
        server.start()
        try:
            ingest = prepare_tenant(server)
            subscription = subscribe(server, server.admin_key, receiver.url)
            make_stale(server, ingest, count=2, seed=13, change_id="chg-c")
            [dead] = eventually(lambda: deliveries(server, subscription, "dead"), what="dead")
            assert (dead["state"], dead["attempts"], dead["last_status"]) == ("dead", 3, 500)
            assert dead["last_error"].startswith("HTTP 500")
            assert dead["next_attempt_at"] is None
            time.sleep(0.5)  # several poll intervals: a dead delivery is not tried again
            assert len(receiver.answered(500)) == 3
            assert deliveries(server, subscription, "pending") == []

            metrics = scrape(server)
            assert metric(metrics, "prov_webhook_outbox", state="dead") == 1
            assert metric(metrics, "prov_webhook_outbox", state="pending") == 0
            assert metric(metrics, "prov_webhook_deliveries_total", outcome="failed") == 2
            assert metric(metrics, "prov_webhook_deliveries_total", outcome="dead") == 1

            receiver.status = 200
            retry = f"{server.url}/v1/subscriptions/{subscription}/deliveries/{dead['id']}/retry"
            answer = httpx.post(retry, headers=server.auth(server.admin_key))
            assert answer.status_code == 200, answer.text
            assert (answer.json()["state"], answer.json()["attempts"]) == ("pending", 0)
            eventually(lambda: receiver.answered(200), what="the retried event")
            eventually(lambda: deliveries(server, subscription, "delivered"))
            # Every attempt carried the same event id: receivers deduplicate on it.
            assert {item.json()["id"] for item in receiver.received} == {f"{dead['id']}-0"}

            metrics = scrape(server)
            assert metric(metrics, "prov_webhook_outbox", state="dead") == 0
            assert metric(metrics, "prov_webhook_outbox", state="delivered") == 1
            # Only a dead delivery is retried; an unknown one is not found.
            admin = server.auth(server.admin_key)
            assert_problem(httpx.post(retry, headers=admin), 409, "not-dead-letter")
            unknown = retry.replace(f"/deliveries/{dead['id']}/", "/deliveries/999/")
            assert_problem(httpx.post(unknown, headers=admin), 404, "not-found")
        finally:
            server.stop()


def subscription_rows(server: Server) -> int:
    engine = make_engine(server.db_url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(select(func.count()).select_from(subscriptions)).scalar_one()
            )
    finally:
        engine.dispose()


BAD_SUBSCRIPTIONS = [
    ({"url": "ftp://hooks.example/x", "events": ["decision.stale"]}, "/url"),
    ({"url": "http:///no-host", "events": ["decision.stale"]}, "/url"),
    ({"url": "hooks.example/no-scheme", "events": ["decision.stale"]}, "/url"),
    ({"url": "http://hooks.example:99999/", "events": ["decision.stale"]}, "/url"),
    ({"url": "http://hooks.example/a b", "events": ["decision.stale"]}, "/url"),
    ({"url": "https://hooks.example/" + "a" * 2048, "events": ["decision.stale"]}, "/url"),
    ({"url": 7, "events": ["decision.stale"]}, "/url"),
    ({"events": ["decision.stale"]}, "/url"),
    ({"url": "https://hooks.example/", "events": ["decision.stale", "decision.made"]}, "/events/1"),
    ({"url": "https://hooks.example/", "events": []}, "/events"),
    ({"url": "https://hooks.example/", "events": "decision.stale"}, "/events"),
    ({"url": "https://hooks.example/", "events": ["decision.stale"], "secret": "x"}, "/secret"),
    (
        {"url": "https://hooks.example/", "events": ["decision.stale"], "description": "d" * 257},
        "/description",
    ),
]


@SQLITE_ONLY
def test_bad_subscriptions_are_problems_and_store_nothing(server: Server) -> None:
    with httpx.Client(base_url=server.url, headers=server.auth(server.admin_key)) as client:
        for body, pointer in BAD_SUBSCRIPTIONS:
            problem = assert_problem(client.post("/v1/subscriptions", json=body), 400)
            assert pointer in pointers(problem), (body, problem)
        answer = client.get("/v1/subscriptions")
        assert answer.json() == {"subscriptions": []}
    assert subscription_rows(server) == 0


@SQLITE_ONLY
def test_a_tenant_reaches_only_its_own_subscriptions(server: Server) -> None:
    acme = server.auth(server.admin_key)
    globex = server.auth(server.admin_for("globex"))
    theirs = subscribe(server, server.admin_for("globex"), "https://globex.example/hooks")
    ours = subscribe(server, server.admin_key, "https://acme.example/hooks")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        listed = client.get("/v1/subscriptions", headers=acme).json()["subscriptions"]
        assert [item["id"] for item in listed] == [ours]
        assert listed[0]["events"] == ["decision.stale"]
        for method, path in [
            ("GET", f"/v1/subscriptions/{theirs}/deliveries"),
            ("DELETE", f"/v1/subscriptions/{theirs}"),
            ("POST", f"/v1/subscriptions/{theirs}/deliveries/1/retry"),
            ("GET", "/v1/subscriptions/sub_absent/deliveries"),
        ]:
            assert_problem(client.request(method, path, headers=acme), 404, "not-found")
        # Still there for its own tenant; then removed by it.
        assert (
            client.get(f"/v1/subscriptions/{theirs}/deliveries", headers=globex).status_code == 200
        )
        removed = client.delete(f"/v1/subscriptions/{theirs}", headers=globex)
        assert removed.status_code == 200, removed.text
        assert removed.json()["removed_at"] is not None
        assert client.get("/v1/subscriptions", headers=globex).json() == {"subscriptions": []}
        assert_problem(client.delete(f"/v1/subscriptions/{theirs}", headers=globex), 404)
        problem = assert_problem(
            client.get(f"/v1/subscriptions/{ours}/deliveries?state=lost", headers=acme), 400
        )
        assert "state" in problem["detail"]


@SQLITE_ONLY
def test_only_admin_keys_manage_subscriptions(server: Server) -> None:
    ours = subscribe(server, server.admin_key, "https://acme.example/hooks")
    calls = [
        ("POST", "/v1/subscriptions", {"url": "https://x.example/", "events": ["decision.stale"]}),
        ("GET", "/v1/subscriptions", None),
        ("DELETE", f"/v1/subscriptions/{ours}", None),
        ("GET", f"/v1/subscriptions/{ours}/deliveries", None),
        ("POST", f"/v1/subscriptions/{ours}/deliveries/1/retry", None),
    ]
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for method, path, body in calls:
            assert_problem(client.request(method, path, json=body), 401, "unauthenticated")
        for role in ("ingest", "audit"):
            key = server.auth(server.api_key(role))
            for method, path, body in calls:
                answer = client.request(method, path, json=body, headers=key)
                problem = assert_problem(answer, 403, "forbidden")
                assert role in problem["detail"]
    assert subscription_rows(server) == 1
