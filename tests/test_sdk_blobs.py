"""Personal content through the SDK, against a real `prov serve`: `Client.put_blob` uploads
salted bytes under the subject's key, a decision references them by digest, the bytes read
back whole, and an erased blob answers 410 while the decision still verifies."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime

import httpx
import msgspec
import pytest

from ingest.client import AsyncClient, Client
from ingest.client.errors import ProblemError
from ledger.blobs.salted import content_of, is_salted
from ledger.records.decision import ContextSnapshot, Model, Output
from tests.http_server import Server
from tests.test_sdk_instrument import _ledger_options

PERSONAL = msgspec.json.encode({"name": "Ada Example", "salary_band": "C"})


def test_personal_content_goes_in_salted_under_its_subject(server: Server) -> None:
    audit = server.auth(server.api_key("audit"))
    with Client(**_ledger_options(server)) as client:  # type: ignore[arg-type]
        digest = client.put_blob(PERSONAL, subject="applicant-7")
        again = client.put_blob(PERSONAL, subject="applicant-7")
        plain = client.put_blob(b"shared policy text", salt=False)
        decision = client.new_decision(
            "loan.approve",
            subject="applicant-7",
            inputs={"application": 7},
            context=[
                ContextSnapshot(
                    name="applicant.profile",
                    version="1",
                    digest=digest,
                    fetched_at=datetime.now(UTC),
                    blob=digest,
                )
            ],
            model=Model(provider="local", name="rules", version="2026-11"),
            output=Output(decision={"approved": True}),
        )
        receipt = client.append(decision)
    # A fresh salt each upload: the same content gets another digest, and the plain digest
    # of the content (what a guesser would compute) is neither.
    assert again != digest
    assert "sha256:" + hashlib.sha256(PERSONAL).hexdigest() not in (digest, again)
    assert plain == "sha256:" + hashlib.sha256(b"shared policy text").hexdigest()
    with httpx.Client(base_url=server.url, headers=audit, timeout=30) as http:
        stored = http.get(f"/v1/blobs/{digest}")
        assert stored.status_code == 200, stored.text
        assert is_salted(stored.content)
        assert content_of(stored.content) == PERSONAL
        assert "sha256:" + hashlib.sha256(stored.content).hexdigest() == digest
        why = http.get(f"/v1/decisions/{receipt.id}/why").json()
        assert [blob["status"] for blob in why["verification"]["blobs"]] == ["present"]
        admin = server.auth(server.admin_key)
        assert http.delete(f"/v1/blobs/{digest}", headers=admin).status_code == 204
        gone = http.get(f"/v1/blobs/{digest}")
        assert gone.status_code == 410
        assert gone.headers["content-type"].startswith("application/problem+json")
        why = http.get(f"/v1/decisions/{receipt.id}/why").json()
        assert [blob["status"] for blob in why["verification"]["blobs"]] == ["erased"]


def test_the_async_client_uploads_too_and_bad_subjects_are_refused(server: Server) -> None:
    options = _ledger_options(server)

    async def run() -> str:
        async with AsyncClient(**options) as client:  # type: ignore[arg-type]
            return await client.put_blob(PERSONAL, subject="applicant-8")

    digest = asyncio.run(run())
    audit = server.auth(server.api_key("audit"))
    assert content_of(httpx.get(f"{server.url}/v1/blobs/{digest}", headers=audit).content) == (
        PERSONAL
    )
    with Client(**options) as client, pytest.raises(ProblemError) as refused:  # type: ignore[arg-type]
        client.put_blob(PERSONAL, subject="x" * 257)
    assert (refused.value.status, refused.value.kind) == (400, "bad-request")
    assert "subject" in str(refused.value)
