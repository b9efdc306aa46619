"""Erasure, retention and holds over HTTP against a real `prov serve`: who may ask, what a
bad body or an unknown subject answers, the floor and a hold refusing with their reason,
reads answering 410 from the erasure on, the why-report and the page naming the erasure,
and the server's job completing interrupted erasures and running queued ones."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, update

from ledger.blobs.vault import object_name
from ledger.ledger import Ledger
from ledger.storage.db import make_engine, write_transaction
from ledger.storage.schema import blob_objects, erasures
from tests.erasure_support import TENANT, record_about
from tests.http_helpers import assert_problem, pointers
from tests.http_server import Server, prepared_server


@pytest.fixture
def served(server: Server) -> Iterator[tuple[Server, Ledger]]:
    """The running server, and its ledger opened beside it to record decisions."""
    ledger = Ledger.open(make_engine(server.db_url), server.key_file)
    try:
        yield server, ledger
    finally:
        ledger.close()


def _keys(server: Server) -> dict[str, dict[str, str]]:
    return {
        "admin": server.auth(server.admin_key),
        "audit": server.auth(server.api_key("audit")),
        "ingest": server.auth(server.api_key("ingest")),
    }


def test_erasure_over_http_refuses_what_it_must_and_erases_what_it_may(
    served: tuple[Server, Ledger],
) -> None:
    server, ledger = served
    alice = record_about(ledger, "alice", 2, seed=5)
    keys = _keys(server)
    body: dict[str, Any] = {"subject": "alice", "reason": "Art. 17 request"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for role in ("audit", "ingest"):
            assert_problem(client.post("/v1/erasures", json=body, headers=keys[role]), 403)
        for bad, pointer in (
            ({"subject": "alice"}, "/reason"),
            (body | {"mood": "sad"}, "/mood"),
            (body | {"request_id": "not an id"}, "/request_id"),
            (body | {"subject": 7}, "/subject"),
            (body | {"queue": "yes"}, "/queue"),
        ):
            problem = assert_problem(
                client.post("/v1/erasures", json=bad, headers=keys["admin"]),
                422,
                "erasure-request-invalid",
            )
            assert pointers(problem) == [pointer]
        unknown = client.post(
            "/v1/erasures", json=body | {"subject": "nobody"}, headers=keys["admin"]
        )
        assert pointers(assert_problem(unknown, 404, "subject-unknown")) == ["/subject"]
        # Just logged: the default floor of 183 days refuses, naming its end.
        refused = assert_problem(
            client.post("/v1/erasures", json=body, headers=keys["admin"]),
            409,
            "erasure-refused",
        )
        assert "retention floor of 183 days" in refused["detail"]
        assert "until 20" in refused["detail"]
        queued = client.post("/v1/erasures", json=body | {"queue": True}, headers=keys["admin"])
        assert queued.status_code == 202, queued.text
        assert queued.json()["state"] == "queued"
        assert queued.json()["not_before"] > queued.json()["requested_at"]

        assert_problem(
            client.put("/v1/retention", json={"floor_days": 0}, headers=keys["audit"]), 403
        )
        bad_rule = client.put(
            "/v1/retention",
            json={"floor_days": 30, "expire_after_days": 7},
            headers=keys["admin"],
        )
        assert pointers(assert_problem(bad_rule, 422)) == ["/expire_after_days"]
        rule = client.put("/v1/retention", json={"floor_days": 0}, headers=keys["admin"])
        assert rule.status_code == 200, rule.text
        assert client.get("/v1/retention", headers=keys["audit"]).json() == rule.json()
        assert rule.json()["version"] == 1

        done = client.post(
            "/v1/erasures", json=body | {"request_id": "http-1"}, headers=keys["admin"]
        )
        assert done.status_code == 201, done.text
        assert done.json()["state"] == "done"
        assert done.json()["requested_by"].startswith("api-key ")  # a key made without a name
        again = client.post(
            "/v1/erasures", json=body | {"request_id": "http-1"}, headers=keys["admin"]
        )
        assert again.status_code == 200
        assert again.json() == done.json()
        conflict = client.post(
            "/v1/erasures",
            json={"subject": "bob", "reason": "r", "request_id": "http-1"},
            headers=keys["admin"],
        )
        assert pointers(assert_problem(conflict, 409, "id-conflict")) == ["/request_id"]

        for digest in alice.blobs:
            assert_problem(client.get(f"/v1/blobs/{digest}", headers=keys["audit"]), 410)
        one = client.get("/v1/erasures/http-1", headers=keys["audit"]).json()
        assert one["erased"] == sorted(alice.blobs)
        listed = client.get("/v1/erasures", headers=keys["audit"]).json()
        assert {item["request_id"] for item in listed} >= {"http-1", queued.json()["request_id"]}
        assert_problem(client.get("/v1/erasures/nope", headers=keys["audit"]), 404)
        assert_problem(client.get("/v1/erasures/a%00b", headers=keys["audit"]), 404)

        why = client.get(f"/v1/decisions/{alice.ids[0]}/why", headers=keys["audit"]).json()
        erased = [blob for blob in why["verification"]["blobs"] if blob["status"] == "erased"]
        assert erased
        assert {blob["erasure"]["request_id"] for blob in erased} == {"http-1"}
        assert {blob["erasure"]["index"] for blob in erased} <= set(one["records"])

    audit_key = keys["audit"]["Authorization"].removeprefix("Bearer ")
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        assert browser.post("/ui/login", data={"api_key": audit_key}).status_code == 303
        page = browser.get(f"/ui/decisions/{alice.ids[0]}")
        assert page.status_code == 200
        assert "erased on" in page.text
        assert "http-1" in page.text


def test_holds_over_http_block_even_an_erasure_by_name_until_released(
    served: tuple[Server, Ledger],
) -> None:
    server, ledger = served
    bob = record_about(ledger, "bob", 1, seed=6)
    digest = sorted(bob.blobs)[0]
    keys = _keys(server)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for bad, pointer in (
            ({"reason": "x"}, "/subject"),
            ({"filter": {"model": "x"}, "reason": "r"}, "/filter/model"),
            ({"filter": {}, "reason": "r"}, "/filter"),
            ({"subject": "bob"}, "/reason"),
        ):
            problem = assert_problem(client.post("/v1/holds", json=bad, headers=keys["admin"]), 422)
            assert pointers(problem) == [pointer], problem
        assert_problem(
            client.post("/v1/holds", json={"subject": "bob", "reason": "r"}, headers=keys["audit"]),
            403,
        )
        placed = client.post(
            "/v1/holds",
            json={"subject": "bob", "reason": "litigation", "hold_id": "case-9"},
            headers=keys["admin"],
        )
        assert placed.status_code == 201, placed.text
        assert placed.json()["live"] is True
        assert [
            hold["hold_id"] for hold in client.get("/v1/holds", headers=keys["audit"]).json()
        ] == ["case-9"]
        refused = assert_problem(
            client.delete(f"/v1/blobs/{digest}", headers=keys["admin"]), 409, "erasure-refused"
        )
        assert "case-9" in refused["detail"]
        assert "litigation" in refused["detail"]
        assert client.get(f"/v1/blobs/{digest}", headers=keys["audit"]).status_code == 200

        assert_problem(client.delete("/v1/holds/case-9", headers=keys["audit"]), 403)
        released = client.delete(
            "/v1/holds/case-9", params={"reason": "settled"}, headers=keys["admin"]
        )
        assert released.status_code == 200, released.text
        assert released.json()["live"] is False
        assert client.get("/v1/holds", headers=keys["audit"]).json() == []
        everything = client.get("/v1/holds", params={"all": "true"}, headers=keys["audit"])
        assert [hold["live"] for hold in everything.json()] == [False]
        assert_problem(client.delete("/v1/holds/none", headers=keys["admin"]), 404)

        assert client.delete(f"/v1/blobs/{digest}", headers=keys["admin"]).status_code == 204
        assert client.delete(f"/v1/blobs/{digest}", headers=keys["admin"]).status_code == 204
        assert_problem(client.get(f"/v1/blobs/{digest}", headers=keys["audit"]), 410)
        kinds = [item["kind"] for item in client.get("/v1/erasures", headers=keys["audit"]).json()]
        assert kinds == ["blobs"]


def test_the_server_job_completes_interrupted_erasures_and_runs_queued_ones(
    db_url: str, tmp_path: Path
) -> None:
    server = prepared_server(db_url, tmp_path, PROV_EXPIRY_INTERVAL_SECONDS="0.3")
    ledger = Ledger.open(make_engine(db_url), server.key_file)
    try:
        carol = record_about(ledger, "carol", 1, seed=7)
        dan = record_about(ledger, "dan", 1, seed=8)
        rules = ledger.rules
        rules.set_retention(TENANT, floor_days=0, expire_after_days=None, set_by="t", now_us=1)
        done = ledger.erasures.erase_subject(
            TENANT, "carol", reason="r", requested_by="t", now_us=time.time_ns() // 1000
        )
        # As if the process died after the commit: the row says recorded and an object of
        # an erased blob is still in the store.
        digest = sorted(carol.blobs)[0]
        with ledger.engine.connect() as connection:
            row = ledger.blobs.row(connection, TENANT, digest)
        assert row is not None
        name = object_name(TENANT, digest, row.key_id or "")
        with write_transaction(ledger.engine) as connection:
            connection.execute(insert(blob_objects).values(name=name, content=b"sealed"))
            connection.execute(
                update(erasures)
                .where(erasures.c.request_id == done.request_id)
                .values(state="recorded", done_us=None)
            )
        hold = rules.add_hold(TENANT, reason="r", placed_by="t", now_us=1, subject="dan")
        queued = ledger.erasures.erase_subject(
            TENANT, "dan", reason="r", requested_by="t", now_us=2, queue=True
        )
        assert queued.state == "queued"
        server.start()
        try:
            _wait(lambda: ledger.erasures.get(TENANT, done.request_id).state == "done")
            assert ledger.blobs.store.get(name) is None
            rules.release_hold(TENANT, hold.hold_id, released_by="t", now_us=3, reason=None)
            _wait(lambda: ledger.erasures.get(TENANT, queued.request_id).state == "done")
            for digest in dan.blobs:
                answer = httpx.get(
                    f"{server.url}/v1/blobs/{digest}", headers=server.auth(server.admin_key)
                )
                assert answer.status_code == 410
        finally:
            server.stop()
    finally:
        ledger.close()


def _wait(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the server's erasure job did not get there"
        time.sleep(0.1)
