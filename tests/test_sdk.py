"""The SDK against a real `prov serve`: a verified receipt that `prov show` can find, and 32
concurrent writers whose acknowledged records are all stored exactly once."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import httpx
import pytest
from sqlalchemy import text

from ingest.client import AsyncClient, Client, verify_receipt
from ledger.keys.signing import SigningKey
from ledger.log.note import NoteVerifier
from ledger.log.receipt import Receipt
from ledger.records.decision import Model, Output
from ledger.storage.db import make_engine
from tests.http_server import TENANT, Server
from tests.support import prov

SERVICE = "loan-underwriter"
WRITERS = 32
PER_WRITER = 150


def _register(server: Server, key: SigningKey) -> None:
    answer = httpx.post(
        f"{server.url}/v1/keys",
        json={"service": SERVICE, "public_key": key.public_key.hex()},
        headers=server.auth(server.admin_key),
    )
    assert answer.status_code == 201, answer.text


def _verifier(server: Server) -> NoteVerifier:
    checkpoint = prov(["checkpoint", "--verifier-key"], db=server.db_url, key=server.key_file)
    return NoteVerifier.parse(checkpoint.out.strip())


def _client(server: Server, api_key: str, key: SigningKey, **options: object) -> Client:
    return Client(
        server.url,
        api_key,
        key,
        tenant=TENANT,
        service=SERVICE,
        verifier_key=_verifier(server),
        **options,  # type: ignore[arg-type]
    )


def _decision(client: Client | AsyncClient, n: int) -> object:
    return client.new_decision(
        "loan.approve",
        inputs={"application": n},
        model=Model(provider="local", name="rules", version="2026-11"),
        output=Output(decision={"approved": n % 3 != 0}),
    )


def test_sdk_round_trip_is_verified_and_shown(server: Server) -> None:
    key = SigningKey.generate()
    _register(server, key)
    api_key = server.api_key("ingest")
    with _client(server, api_key, key) as client:
        decision = _decision(client, 1)
        receipt = client.append(decision)  # type: ignore[arg-type]
        again = client.append(decision)  # type: ignore[arg-type]
        record = client.sign(decision)  # type: ignore[arg-type]
    assert receipt.status == "created"
    assert (again.status, again.index, again.leaf_hash) == (
        "existing",
        receipt.index,
        receipt.leaf_hash,
    )
    # The receipt verifies under the verifier key taken from the ledger's own key file.
    assert verify_receipt(receipt, _verifier(server), record) is not None

    shown = prov(["show", str(receipt.index)], db=server.db_url, key=server.key_file)
    assert shown.code == 0, shown.err
    view = shown.json_lines()[0]
    assert view["entry"]["leaf_hash"] == receipt.leaf_hash  # type: ignore[index]
    assert view["payload"]["id"] == receipt.id  # type: ignore[index]
    assert view["verification"]["signature"]["status"] == "valid"  # type: ignore[index]


def test_async_client_round_trip(server: Server) -> None:
    key = SigningKey.generate()
    _register(server, key)
    api_key = server.api_key("ingest")

    async def run() -> list[Receipt]:
        async with AsyncClient(
            server.url,
            api_key,
            key,
            tenant=TENANT,
            service=SERVICE,
            verifier_key=_verifier(server),
        ) as client:
            futures = [await client.submit(_decision(client, n)) for n in range(50)]  # type: ignore[arg-type]
            single = await client.append(_decision(client, 99))  # type: ignore[arg-type]
            return [*(await asyncio.gather(*futures)), single]

    receipts = asyncio.run(run())
    assert sorted(receipt.index for receipt in receipts) == list(range(51))


@pytest.mark.slow
def test_32_concurrent_writers_store_each_record_once(server: Server) -> None:
    key = SigningKey.generate()
    _register(server, key)
    api_key = server.api_key("ingest")
    receipts: list[Receipt] = []
    lock = threading.Lock()

    def write(writer: int) -> None:
        with _client(server, api_key, key) as client:
            decisions = [_decision(client, writer * PER_WRITER + n) for n in range(PER_WRITER)]
            if writer % 2:  # half send one record per request, half batch in the background
                done = [client.append(decision) for decision in decisions]  # type: ignore[arg-type]
            else:
                futures = [client.submit(decision) for decision in decisions]  # type: ignore[arg-type]
                client.flush()
                done = [future.result() for future in futures]
        with lock:
            receipts.extend(done)

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert len(receipts) == WRITERS * PER_WRITER
    assert {receipt.status for receipt in receipts} == {"created"}
    assert sorted(receipt.index for receipt in receipts) == list(range(WRITERS * PER_WRITER))

    engine = make_engine(server.db_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT idx, record_id, leaf_hash FROM log_entries"))
        stored = {idx: (record_id, bytes(leaf).hex()) for idx, record_id, leaf in rows}
    engine.dispose()
    assert len(stored) == len(receipts)
    assert Counter(record_id for record_id, _ in stored.values()).most_common(1)[0][1] == 1
    for receipt in receipts:
        assert stored[receipt.index] == (receipt.id, receipt.leaf_hash)
    verified = prov(["verify"], db=server.db_url, key=server.key_file)
    assert verified.code == 0, verified.err
    assert f"size {len(receipts)}" in verified.out
