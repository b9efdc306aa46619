"""Who may call what, over HTTP: every operation of the API refuses a missing or unknown key
(401) and a key of the wrong role (403); a tenant never reaches another tenant's blobs or
keys, nor appends its records; a revoked API key stops working; its secret is stored only as
a hash; public reads open the log's checkpoint and identity and nothing else."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
from sqlalchemy import select

from ledger.keys.apikeys import Role
from ledger.storage.db import make_engine
from ledger.storage.schema import api_keys
from tests.http_helpers import (
    SQLITE_ONLY,
    Operation,
    app_openapi_document,
    array,
    assert_problem,
    decisions,
    operations,
    register_demo_keys,
    signed,
    tree_size,
)
from tests.http_server import Server, prepared_server

OPEN: frozenset[Role] = frozenset()  # no key needed
ANY = frozenset(Role)
WRITE = frozenset({Role.INGEST, Role.ADMIN})
READ = frozenset({Role.AUDIT, Role.ADMIN})
ADMIN = frozenset({Role.ADMIN})

# Who may call each operation (docs/http-api.md). A new route fails the role check below
# until it is listed here.
ROLES: dict[Operation, frozenset[Role]] = {
    Operation("POST", "/v1/records"): WRITE,
    Operation("POST", "/v1/records/batch"): WRITE,
    Operation("POST", "/v1/traces"): WRITE,
    Operation("POST", "/v1/logs"): WRITE,
    Operation("PUT", "/v1/blobs/{digest}"): WRITE,
    Operation("GET", "/v1/blobs/{digest}"): READ,
    Operation("DELETE", "/v1/blobs/{digest}"): ADMIN,
    Operation("POST", "/v1/erasures"): ADMIN,
    Operation("GET", "/v1/erasures"): READ,
    Operation("GET", "/v1/erasures/{request_id}"): READ,
    Operation("GET", "/v1/retention"): READ,
    Operation("PUT", "/v1/retention"): ADMIN,
    Operation("GET", "/v1/holds"): READ,
    Operation("POST", "/v1/holds"): ADMIN,
    Operation("GET", "/v1/holds/{hold_id}"): READ,
    Operation("DELETE", "/v1/holds/{hold_id}"): ADMIN,
    Operation("GET", "/v1/keys"): ADMIN,
    Operation("POST", "/v1/keys"): ADMIN,
    Operation("DELETE", "/v1/keys/{keyid}"): ADMIN,
    Operation("GET", "/v1/api-keys"): ADMIN,
    Operation("POST", "/v1/api-keys"): ADMIN,
    Operation("DELETE", "/v1/api-keys/{key_id}"): ADMIN,
    Operation("GET", "/v1/subscriptions"): ADMIN,
    Operation("POST", "/v1/subscriptions"): ADMIN,
    Operation("DELETE", "/v1/subscriptions/{subscription_id}"): ADMIN,
    Operation("GET", "/v1/subscriptions/{subscription_id}/deliveries"): ADMIN,
    Operation("POST", "/v1/subscriptions/{subscription_id}/deliveries/{delivery_id}/retry"): ADMIN,
    Operation("POST", "/v1/monitors"): ADMIN,
    Operation("GET", "/v1/monitors"): READ,
    Operation("GET", "/v1/monitors/{monitor_id}"): READ,
    Operation("GET", "/v1/breaches/{record_id}"): READ,
    Operation("GET", "/v1/decisions"): READ,
    Operation("GET", "/v1/decisions/{record_id}/why"): READ,
    Operation("GET", "/v1/decisions/{record_id}/freshness"): READ,
    Operation("GET", "/v1/reports/{name}"): READ,
    Operation("GET", "/v1/subjects/{ref}/decisions"): READ,
    Operation("POST", "/v1/replays"): ADMIN,
    Operation("GET", "/v1/replays/{job_id}"): READ,
    Operation("GET", "/v1/policies"): READ,
    Operation("POST", "/v1/policy-checks"): READ,
    Operation("GET", "/v1/checkpoint"): ANY,
    Operation("GET", "/v1/log"): ANY,
    Operation("GET", "/v1/entries/{index}"): ANY,
    Operation("GET", "/v1/entries/{index}/receipt"): ANY,
    Operation("GET", "/v1/proofs/inclusion"): ANY,
    Operation("GET", "/v1/proofs/consistency"): ANY,
    Operation("GET", "/checkpoint"): ANY,
    Operation("GET", "/tile/{path}"): ANY,
    # tlog-tiles: HEAD is answered like GET, so it is guarded like GET.
    Operation("HEAD", "/v1/checkpoint"): ANY,
    Operation("HEAD", "/checkpoint"): ANY,
    Operation("GET", "/v1/checkpoint/latest"): ANY,
    Operation("HEAD", "/v1/checkpoint/latest"): ANY,
    Operation("HEAD", "/tile/{path}"): ANY,
    Operation("GET", "/healthz"): OPEN,
    Operation("GET", "/readyz"): OPEN,
    Operation("GET", "/metrics"): OPEN,
}
PROBES = {"/healthz", "/readyz", "/metrics"}
SCHEMA_PAGES = ("/schema", "/schema/openapi.json", "/schema/openapi.yaml", "/schema/swagger")
# The log's hashes, entries and proofs: never payloads, so a setting may open them.
PUBLIC_READS = {operation for operation, roles in ROLES.items() if roles == ANY}


def call(
    client: httpx.Client, operation: Operation, headers: dict[str, str] | None = None
) -> httpx.Response:
    """The operation, with a well-formed JSON body where it takes one."""
    body = None if operation.method in {"GET", "DELETE"} else b"{}"
    return client.request(
        operation.method,
        operation.concrete(),
        content=body,
        headers={"Content-Type": "application/json"} | (headers or {}),
    )


def assert_unauthenticated(answer: httpx.Response) -> None:
    if answer.request.method == "HEAD":  # the headers of the GET answer, with no body
        assert answer.status_code == 401, answer.headers
        assert answer.headers["content-type"].startswith("application/problem+json")
    else:
        assert_problem(answer, 401, "unauthenticated")
    assert answer.headers["www-authenticate"].lower().startswith("bearer"), answer.headers


def bad_credentials(server: Server) -> dict[str, dict[str, str]]:
    admin = server.admin_key
    return {
        "no token": {"Authorization": "Bearer"},
        "other scheme": {"Authorization": f"Basic {admin}"},
        "no scheme": {"Authorization": admin},
        "not a key": {"Authorization": "Bearer not-a-key"},
        "unknown key": server.auth("prov_0123456789abcdef_" + "A" * 43),
        "altered key": server.auth(admin[:-1] + ("A" if admin[-1] != "A" else "B")),
    }


def test_every_operation_needs_a_key_of_an_admitted_role(server: Server) -> None:
    listed = operations(app_openapi_document())
    assert Operation("POST", "/v1/records") in listed, "the operation list is incomplete"
    keys = {role: server.api_key(role.value) for role in (Role.INGEST, Role.AUDIT)}
    keys[Role.ADMIN] = server.admin_key
    size = tree_size(server)
    open_operations = set()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for operation in sorted(listed):
            missing = call(client, operation)
            if missing.status_code != 401:
                open_operations.add(operation)
                continue
            assert_unauthenticated(missing)
            for label, headers in bad_credentials(server).items():
                answer = call(client, operation, headers)
                assert answer.status_code == 401, (operation, label, answer.text)
                assert_unauthenticated(answer)

        unclassified = listed - ROLES.keys()
        assert not unclassified, f"state who may call {sorted(unclassified)} in ROLES"
        for operation in sorted(listed):
            admitted = ROLES[operation]
            for role, key in keys.items():
                answer = call(client, operation, server.auth(key))
                if role in admitted or not admitted:
                    assert answer.status_code not in {401, 403}, (operation, role, answer.text)
                else:
                    problem = assert_problem(answer, 403, "forbidden")
                    assert role.value in problem["detail"], problem

        # The schema pages are not operations of the API, and need no key either.
        for page in SCHEMA_PAGES:
            assert client.get(page).status_code not in {401, 403}, page

    assert {operation.path for operation in open_operations} == PROBES
    assert all(operation.method == "GET" for operation in open_operations)
    assert tree_size(server) == size


@SQLITE_ONLY
def test_the_key_is_checked_before_the_body_is_read(server: Server) -> None:
    ingest = server.auth(server.api_key("ingest"))
    audit = server.auth(server.api_key("audit"))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for operation in sorted(operations(app_openapi_document())):
            if operation.method not in {"POST", "PUT"}:
                continue
            wrong_role = ingest if Role.INGEST not in ROLES[operation] else audit
            headers = {"Content-Type": "application/json"}
            body = b"{not json"
            answer = client.request(
                operation.method, operation.concrete(), content=body, headers=headers
            )
            assert answer.status_code == 401, (operation, answer.text)
            answer = client.request(
                operation.method, operation.concrete(), content=body, headers=headers | wrong_role
            )
            assert answer.status_code == 403, (operation, answer.text)


def test_the_openapi_document_says_which_operations_need_no_key() -> None:
    document = app_openapi_document()
    keyless = {
        Operation(method.upper(), path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if not any(operation.get("security", document.get("security", [])))
    }
    assert keyless == {operation for operation, roles in ROLES.items() if roles == OPEN}


def test_another_tenants_resources_are_not_found(server: Server) -> None:
    blob = b"acme's private bytes"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    absent = "sha256:" + hashlib.sha256(b"nobody uploaded this").hexdigest()
    acme = server.auth(server.admin_key)
    acme_keyids = register_demo_keys(server, server.admin_key)
    acme_ingest = server.api_key("ingest")
    globex_admin = server.admin_for("globex")
    globex_audit = server.api_key("audit", tenant="globex")
    globex_ingest = server.api_key("ingest", tenant="globex")
    register_demo_keys(server, globex_admin, tenant="globex")

    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.put(f"/v1/blobs/{digest}", content=blob, headers=acme).status_code == 201
        acme_api_key_id = acme_ingest.split("_")[1]

        for key in (globex_audit, globex_admin):
            other = assert_problem(
                client.get(f"/v1/blobs/{digest}", headers=server.auth(key)), 404, "not-found"
            )
            nothing = assert_problem(
                client.get(f"/v1/blobs/{absent}", headers=server.auth(key)), 404, "not-found"
            )
            assert (other["type"], other["title"]) == (nothing["type"], nothing["title"])
            assert blob.decode() not in str(other)
        globex = server.auth(globex_admin)
        for keyid in acme_keyids.values():
            assert_problem(client.delete(f"/v1/keys/{keyid}", headers=globex), 404, "not-found")
        assert_problem(
            client.delete(f"/v1/api-keys/{acme_api_key_id}", headers=globex), 404, "not-found"
        )
        listed_keys = client.get("/v1/keys", headers=globex).json()["keys"]
        assert {key["tenant"] for key in listed_keys} == {"globex"}
        listed_api_keys = client.get("/v1/api-keys", headers=globex).json()["api_keys"]
        assert acme_api_key_id not in {key["id"] for key in listed_api_keys}

        # Nothing of acme's was touched: its keys are live and its blob is there.
        assert all(
            key["revoked_at"] is None for key in client.get("/v1/keys", headers=acme).json()["keys"]
        )
        assert client.get(f"/v1/blobs/{digest}", headers=acme).content == blob

        # An ingest key of globex may not append acme's records, alone or in a batch.
        acme_records = [signed(decision) for decision in decisions(2, seed=3)]
        globex_record = signed(decisions(1, seed=4, tenant="globex")[0])
        size = tree_size(server)
        ingest = server.auth(globex_ingest)
        problem = assert_problem(
            client.post("/v1/records", content=acme_records[0], headers=ingest),
            403,
            "tenant-mismatch",
        )
        assert "/payload/tenant" in [error["pointer"] for error in problem.get("errors", [])]
        batch = array(acme_records[1], globex_record)
        answer = client.post("/v1/records/batch", content=batch, headers=ingest)
        assert answer.status_code == 200, answer.text
        first, second = answer.json()["results"]
        assert first["status"] == 403, first
        assert first["problem"]["type"] == "urn:prov:problem:tenant-mismatch"
        assert second["status"] == 201, second
        assert tree_size(server) == size + 1

        # The same acme records are accepted with acme's own key: only the tenant was wrong.
        mine = server.auth(acme_ingest)
        assert client.post("/v1/records", content=acme_records[0], headers=mine).status_code == 201
        assert client.post("/v1/records", content=acme_records[1], headers=mine).status_code == 201
        assert tree_size(server) == size + 3


def test_revoked_api_key_stops_working_and_only_its_hash_is_stored(
    db_url: str, tmp_path: Path
) -> None:
    server = prepared_server(db_url, tmp_path, PROV_AUTH_CACHE_SECONDS="0")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            admin = server.auth(server.admin_key)
            created = client.post(
                "/v1/api-keys", json={"role": "audit", "name": "auditor"}, headers=admin
            )
            assert created.status_code == 201, created.text
            token, key_id = created.json()["key"], created.json()["id"]
            assert client.get("/v1/log", headers=server.auth(token)).status_code == 200

            listed = client.get("/v1/api-keys", headers=admin)
            assert listed.status_code == 200
            assert token not in listed.text
            assert key_id in {key["id"] for key in listed.json()["api_keys"]}

            revoked = client.delete(f"/v1/api-keys/{key_id}", headers=admin)
            assert revoked.status_code == 200, revoked.text
            assert revoked.json()["revoked_at"] is not None
            assert_unauthenticated(client.get("/v1/log", headers=server.auth(token)))
            # Other keys are unaffected.
            assert client.get("/v1/log", headers=admin).status_code == 200
    finally:
        server.stop()

    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            rows = [tuple(row) for row in connection.execute(select(api_keys))]
            stored_hash = connection.execute(
                select(api_keys.c.key_hash).where(api_keys.c.id == key_id)
            ).scalar_one()
    finally:
        engine.dispose()
    assert len(rows) == 2
    secret = token.removeprefix(f"prov_{key_id}_")
    assert len(secret) >= 32
    for row in rows:
        for value in row:
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            assert secret not in text, row
    assert bytes(stored_hash) == hashlib.sha256(token.encode()).digest()


def test_public_reads_open_only_the_log_reads(db_url: str, tmp_path: Path) -> None:
    server = prepared_server(db_url, tmp_path, PROV_PUBLIC_READS="1")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            checkpoint = client.get("/v1/checkpoint")
            assert checkpoint.status_code == 200, checkpoint.text
            assert checkpoint.headers["content-type"].startswith("text/plain")
            log = client.get("/v1/log")
            assert log.status_code == 200, log.text
            assert log.json()["tree_size"] == 0
            assert checkpoint.text.splitlines()[0] == log.json()["origin"]
            for operation in sorted(operations(app_openapi_document())):
                if operation in PUBLIC_READS or operation.path in PROBES:
                    continue
                assert_unauthenticated(call(client, operation))
    finally:
        server.stop()
