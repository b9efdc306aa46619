"""Freshness over HTTP, the SDK and the CLI, against a real `prov serve` on loopback: a
change's receipt counts what it invalidated, `GET /v1/decisions/{id}/freshness` answers with
evidence that `prov verify-freshness` checks offline, `client.is_fresh` caches, and search
finds what went stale (`?freshness=stale&since=`, `prov search --stale`)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from ingest.client import AnswerInvalid, Client
from ingest.client.freshness import FreshnessCache
from ledger.keys.signing import SigningKey
from ledger.log.note import NoteSigner, NoteVerifier
from ledger.records.decision import Dependency, Freshness, Model, Output
from tests.http_helpers import assert_problem
from tests.http_server import TENANT, Server, free_port
from tests.support import PROV, prov

SERVICE = "inventory"


def _client(server: Server, **options: object) -> Client:
    key = SigningKey.generate()
    answer = httpx.post(
        f"{server.url}/v1/keys",
        json={"service": SERVICE, "public_key": key.public_key.hex()},
        headers=server.auth(server.admin_key),
    )
    assert answer.status_code == 201, answer.text
    checkpoint = prov(["checkpoint", "--verifier-key"], db=server.db_url, key=server.key_file)
    return Client(
        server.url,
        server.api_key("admin"),
        key,
        tenant=TENANT,
        service=SERVICE,
        **({"verifier_key": NoteVerifier.parse(checkpoint.out.strip())} | options),  # type: ignore[arg-type]
    )


def _decide(client: Client, record_id: str, version: str) -> None:
    client.append(
        client.new_decision(
            "stock.reserve",
            id=record_id,
            inputs={"sku": "sku-1"},
            model=Model(provider="local", name="rules", version="1"),
            output=Output(decision={"reserve": True}),
            freshness=Freshness(depends_on=[Dependency(key="stock:sku-1", version=version)]),
        )
    )


def _listen(server: Server) -> tuple[subprocess.Popen[str], str]:
    """`prov subscriptions listen` on a free port, subscribed for the tenant: the receiver
    the README has a newcomer run."""
    port = free_port()
    key = prov(["checkpoint", "--verifier-key"], db=server.db_url, key=server.key_file).out.strip()
    listener = subprocess.Popen(
        [
            PROV,
            "subscriptions",
            "listen",
            "--port",
            str(port),
            "--verifier-key",
            key,
            "--count",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    added = prov(
        ["subscriptions", "add", url, "--tenant", TENANT], db=server.db_url, key=server.key_file
    )
    assert added.code == 0, added.err
    return listener, url


def test_change_freshness_search_and_offline_check(server: Server, tmp_path: Path) -> None:
    listener, _ = _listen(server)
    with _client(server, freshness_ttl=60) as client:
        _decide(client, "r1", "v1")
        _decide(client, "r2", "v1")
        _decide(client, "r3", "v2")
        assert client.is_fresh("r1")  # cached from here on, for a minute
        before = datetime.now(UTC)
        receipt = client.append(client.new_context_change("stock:sku-1", "v2", id="chg-1"))
        assert receipt.invalidated == 2
        # The receiver got the signed event, verified it, printed it and stopped (--count 1).
        out, err = listener.communicate(timeout=60)
        assert listener.returncode == 0, err
        event = json.loads(out)
        assert (event["type"], event["change"]["id"]) == ("decision.stale", "chg-1")
        assert sorted(item["id"] for item in event["decisions"]) == ["r1", "r2"]
        assert client.is_fresh("r1")  # the cached verdict, at most freshness_ttl late
        answer = client.freshness("r1")
        assert answer["state"] == "stale"
        assert not client.is_fresh("r1")  # freshness() refreshed the cache
        assert client.is_fresh("r3")
        headers = server.auth(server.api_key("audit"))
        stale = httpx.get(
            f"{server.url}/v1/decisions",
            params={"freshness": "stale", "since": before.isoformat()},
            headers=headers,
        ).json()
        assert sorted(d["id"] for d in stale["decisions"]) == ["r1", "r2"]
        later = httpx.get(
            f"{server.url}/v1/decisions",
            params={"freshness": "stale", "since": datetime.now(UTC).isoformat()},
            headers=headers,
        ).json()
        assert later["decisions"] == []
        fresh = httpx.get(
            f"{server.url}/v1/decisions", params={"freshness": "fresh"}, headers=headers
        ).json()
        assert [d["id"] for d in fresh["decisions"]] == ["r3"]
    saved = tmp_path / "answer.json"
    run = prov(
        ["fresh", "r2", "--url", server.url, "--api-key", server.api_key("audit"), "--json"],
        db=server.db_url,
        key=server.key_file,
    )
    saved.write_text(run.out)
    assert json.loads(run.out)["reasons"][0]["change"]["id"] == "chg-1"
    key = prov(["checkpoint", "--verifier-key"], db=server.db_url, key=server.key_file)
    checked = _offline("verify-freshness", str(saved), "--verifier-key", key.out.strip())
    assert "verifies offline" in checked.stdout, checked.stderr
    tampered = json.loads(run.out)
    tampered["state"] = "fresh"
    saved.write_text(json.dumps(tampered))
    failed = _offline("verify-freshness", str(saved), "--verifier-key", key.out.strip())
    assert failed.returncode == 1
    assert "FAILED at signed" in failed.stderr
    listed = prov(
        ["search", "--stale", "--tenant", TENANT, "--json"], db=server.db_url, key=server.key_file
    )
    assert sorted(d["id"] for d in json.loads(listed.out)["decisions"]) == ["r1", "r2"]
    status = prov(
        ["fresh", "r3", "--tenant", TENANT, "--exit-status"], db=server.db_url, key=server.key_file
    )
    assert status.code == 0
    assert "fresh" in status.out
    # On the same server (one start per engine keeps the suite short):
    _bad_freshness_requests_are_problems(server)
    _an_answer_from_another_ledger_is_refused(server)


def _offline(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed `prov`, with no database: what an auditor runs on a saved answer."""
    return subprocess.run([PROV, *args], capture_output=True, text=True, timeout=120, check=False)


def _bad_freshness_requests_are_problems(server: Server) -> None:
    headers = server.auth(server.api_key("audit"))
    missing = httpx.get(f"{server.url}/v1/decisions/nope/freshness", headers=headers)
    assert_problem(missing, 404)
    wrong = httpx.get(f"{server.url}/v1/decisions", params={"freshness": "rotten"}, headers=headers)
    assert_problem(wrong, 400)
    alone = httpx.get(
        f"{server.url}/v1/decisions", params={"since": "2026-01-01T00:00:00Z"}, headers=headers
    )
    assert_problem(alone, 400)


def _an_answer_from_another_ledger_is_refused(server: Server) -> None:
    # A client that pins another ledger's key refuses this ledger's answers.
    impostor = NoteSigner("elsewhere.example/log", SigningKey.generate()).verifier
    with _client(server, verifier_key=impostor) as client, pytest.raises(AnswerInvalid):
        client.freshness("r1")


def test_the_cache_expires_and_is_bounded() -> None:
    cache = FreshnessCache(ttl=60, size=2)
    for name in ("a", "b", "c"):
        cache.put(name, "fresh")
    assert [cache.get(name) for name in ("a", "b", "c")] == [None, "fresh", "fresh"]
    nothing = FreshnessCache(ttl=0)
    nothing.put("a", "fresh")
    assert nothing.get("a") is None
