"""Replay jobs over HTTP against a real `prov serve` on a loopback port, on both engines.

No real model provider is reachable here; `tests.model_servers.ModelServer` is a local
server that speaks the providers' wire protocols, and the server's registry
(PROV_REPLAY_REGISTRY) routes the demo's models to it. Jobs run in the background of the
server; the tests poll `GET /v1/replays/{id}` as a client would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from ledger.storage.db import make_engine
from ledger.storage.schema import replay_jobs
from tests.http_helpers import SQLITE_ONLY, assert_problem, pointers
from tests.http_server import Server, prepared_server
from tests.model_servers import API_KEY, ModelServer, running
from tests.replay_demo import CANDIDATE, logged_verdicts, record_demo, write_registry
from tests.support import prov


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    with running(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def replay_server(db_url: str, tmp_path: Path, model_server: ModelServer) -> Iterator[Server]:
    """`prov serve` with a model registry pointing at `model_server`, over 12 demo
    decisions (four of each scenario)."""
    registry = write_registry(tmp_path, model_server)
    served = prepared_server(
        db_url,
        tmp_path,
        PROV_REPLAY_REGISTRY=str(registry),
        TEST_OPENAI_KEY=API_KEY,
        TEST_ANTHROPIC_KEY=API_KEY,
    )
    record_demo(db_url, served.key_file, 12, seed=9)
    served.start()
    yield served
    served.stop()


def finished(client: httpx.Client, location: str, timeout: float = 120.0) -> dict[str, Any]:
    """Poll the job until it is done or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.get(location)
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {location} did not finish in {timeout}s")


def some_decision(client: httpx.Client, decision_type: str) -> str:
    page = client.get("/v1/decisions", params={"decision_type": decision_type}).json()
    decision_id: str = page["decisions"][0]["id"]
    return decision_id


def test_single_and_batch_replay_jobs(replay_server: Server) -> None:
    server = replay_server
    admin = server.auth(server.admin_key)
    with httpx.Client(base_url=server.url, headers=admin, timeout=30) as client:
        decision_id = some_decision(client, "loan.approve")
        started = client.post("/v1/replays", json={"decision_id": decision_id})
        assert started.status_code == 202, started.text
        job = started.json()
        assert started.headers["location"] == f"/v1/replays/{job['id']}"
        assert job["kind"] == "single"
        assert job["state"] == "queued"
        assert job["total"] == 1
        assert job["request"]["mode"] == "pinned"
        single = finished(client, started.headers["location"])
        assert single["state"] == "done", single
        assert single["report"]["replay_of"] == decision_id
        assert single["report"]["mode"] == "pinned"
        assert single["counts"] == {single["report"]["verdict"]: 1}
        assert single["done"] == 1
        assert single["progress"] == 1.0
        assert isinstance(single["replay_index"], int)

        started = client.post(
            "/v1/replays",
            json={"where": "decision_type=order.route", "limit": 3, "model": CANDIDATE},
        )
        assert started.status_code == 202, started.text
        assert started.json()["request"]["mode"] == "counterfactual"
        assert started.json()["total"] == 3
        batch = finished(client, started.headers["location"])
        assert batch["state"] == "done", batch
        report = batch["report"]
        assert report["batch"] == batch["id"]
        assert report["total"] == report["stored"] == batch["done"] == 3
        assert sum(share["share"] for share in report["verdicts"]) == pytest.approx(1.0)
        counts = {
            share["verdict"]: share["count"] for share in report["verdicts"] if share["count"]
        }
        assert batch["counts"] == counts
        assert logged_verdicts(make_engine(server.db_url), batch["id"]) == counts
        assert len(report["replays"]) == 3
        assert [model["name"] for model in report["models"]] == [CANDIDATE]

        # Readers read; only admin keys start replays.
        audit = server.auth(server.api_key("audit"))
        ingest = server.auth(server.api_key("ingest"))
        assert client.get(started.headers["location"], headers=audit).status_code == 200
        body = {"decision_id": decision_id, "mode": "deterministic"}
        assert_problem(client.post("/v1/replays", json=body, headers=audit), 403, "forbidden")
        assert_problem(client.post("/v1/replays", json=body, headers=ingest), 403, "forbidden")
        assert_problem(client.get(started.headers["location"], headers=ingest), 403, "forbidden")
        assert_problem(httpx.get(server.url + started.headers["location"]), 401)

        # Another tenant's job is not found, as a missing one is.
        other = server.auth(server.admin_for("globex"))
        assert_problem(client.get(started.headers["location"], headers=other), 404, "not-found")
        assert_problem(client.get("/v1/replays/replay-0000000000000000"), 404, "not-found")
        # ... and so is another tenant's decision.
        assert_problem(client.post("/v1/replays", json=body, headers=other), 404, "not-found")

    verified = prov(["verify", "--signatures"], db=server.db_url, key=server.key_file)
    assert verified.code == 0, verified.err


@SQLITE_ONLY
def test_bad_bodies_are_problems_and_start_nothing(replay_server: Server) -> None:
    server = replay_server
    with httpx.Client(
        base_url=server.url, headers=server.auth(server.admin_key), timeout=30
    ) as client:
        decision_id = some_decision(client, "order.route")

        def refused(body: Any, status: int, pointer: str | None = None) -> None:
            answer = client.post("/v1/replays", json=body)
            problem = assert_problem(answer, status)
            if pointer is not None:
                assert pointer in pointers(problem), problem

        refused({}, 400, "")
        refused({"decision_id": decision_id, "where": "decision_type=order.route"}, 400, "")
        refused({"decision_id": decision_id, "limit": 3}, 400, "/limit")
        refused({"where": "colour=red"}, 400, "/where")
        refused({"where": "decision_type=order.route&decision_type=loan.approve"}, 400, "/where")
        refused({"where": "decision_type=no.such"}, 400, "/where")
        refused({"where": "decision_type=order.route", "limit": 0}, 400, "/limit")
        refused({"decision_id": decision_id, "mode": "sideways"}, 400, "/mode")
        refused({"decision_id": decision_id, "colour": 1}, 400, "/colour")
        refused({"decision_id": decision_id, "model": "nope"}, 400, "/model")
        refused({"decision_id": decision_id, "parameters": {"temperature": -1}}, 400, "/parameters")
        refused({"decision_id": decision_id, "mode": "counterfactual"}, 400, "/model")
        refused({"decision_id": decision_id, "mode": "deterministic", "model": "x"}, 400, "/mode")
        refused({"decision_id": "no-such-decision"}, 404)
        refused([decision_id], 400)
        answer = client.post(
            "/v1/replays", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert_problem(answer, 400)
    with make_engine(server.db_url).connect() as connection:
        jobs = connection.execute(select(func.count()).select_from(replay_jobs)).scalar_one()
    assert jobs == 0


@SQLITE_ONLY
def test_a_job_cut_short_by_a_crash_is_failed_when_the_server_starts(
    replay_server: Server, model_server: ModelServer
) -> None:
    server = replay_server
    model_server.script.latency_s = 0.5  # every model call takes half a second
    with httpx.Client(
        base_url=server.url, headers=server.auth(server.admin_key), timeout=30
    ) as client:
        started = client.post(
            "/v1/replays", json={"where": "service=order-router", "model": CANDIDATE}
        )
        assert started.status_code == 202, started.text
        location = started.headers["location"]
        deadline = time.monotonic() + 30
        while client.get(location).json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server.kill()
        server.start()
        job = client.get(location).json()
    assert job["state"] == "failed"
    assert "interrupted" in job["error"]
    assert job["report"] is None
    # What was appended before the crash is whole and verifies.
    verified = prov(["verify", "--signatures"], db=server.db_url, key=server.key_file)
    assert verified.code == 0, verified.err
