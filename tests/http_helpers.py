"""Small helpers shared by the HTTP tests: problem documents, the log's size, the API's
operations, demo service keys registered over HTTP, signed test records and metrics."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import httpx
import msgspec
import pytest

from httpapi.problems import PROBLEM_MEDIA_TYPE, TYPE_PREFIX
from ledger.records import dsse
from ledger.records.decision import Decision
from service.demo.scenarios import DEMO_SERVICES, demo_decisions
from service.demo.traffic import demo_signing_key
from service.settings import Settings
from service.web.app import create_app
from tests.http_server import TENANT, Server
from tests.support import sign

# For checks of the HTTP layer alone, where the database engine makes no difference.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})
# A value for each path parameter, of the form the route expects but naming nothing stored.
PATH_SAMPLES = {
    "digest": "sha256:" + "0" * 64,
    "index": "0",
    "path": "0/000",
    "delivery_id": "1",
}


def check_problem_document(body: object, status: int) -> None:
    """`body` is an RFC 9457 problem document for `status`, as the API promises."""
    assert isinstance(body, dict), body
    assert isinstance(body.get("type"), str), body
    assert body["type"].startswith(TYPE_PREFIX), body
    assert isinstance(body.get("title"), str), body
    assert body["title"], body
    assert body.get("status") == status, body
    assert isinstance(body.get("detail"), str), body
    assert body["detail"], body


def assert_problem(answer: httpx.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    """The answer is a problem+json of `status` (and `kind`); returns the document."""
    assert answer.status_code == status, f"{answer.status_code}: {answer.text}"
    assert answer.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE), answer.headers
    body: dict[str, Any] = answer.json()
    check_problem_document(body, status)
    if kind is not None:
        assert body["type"] == TYPE_PREFIX + kind, body
    return body


def pointers(problem: dict[str, Any]) -> list[str]:
    return [error["pointer"] for error in problem.get("errors", [])]


def tree_size(server: Server) -> int:
    answer = httpx.get(f"{server.url}/v1/log", headers=server.auth(server.admin_key))
    assert answer.status_code == 200, answer.text
    size: int = answer.json()["tree_size"]
    return size


class Operation(NamedTuple):
    method: str  # upper case
    path: str  # the OpenAPI template, e.g. /v1/blobs/{digest}

    def concrete(self) -> str:
        return re.sub(r"\{(\w+)\}", lambda name: PATH_SAMPLES.get(name[1], "absent"), self.path)


def operations(document: dict[str, Any]) -> set[Operation]:
    return {
        Operation(method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def app_openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the application, as the running service describes itself at
    `/schema/openapi.json`, built in-process by the same factory."""
    with warnings.catch_warnings():  # the framework's deprecation notices about the routes
        warnings.simplefilter("ignore", DeprecationWarning)
        document: dict[str, Any] = create_app(Settings()).openapi_schema.to_schema()
    return document


def register_demo_keys(server: Server, admin_key: str, tenant: str = TENANT) -> dict[str, str]:
    """Register the demo services' keys for `tenant` over HTTP; their keyids by service."""
    keyids = {}
    with httpx.Client(base_url=server.url, headers=server.auth(admin_key)) as client:
        for service in sorted(set(DEMO_SERVICES.values())):
            answer = client.post(
                "/v1/keys",
                json={
                    "service": service,
                    "public_key": demo_signing_key(tenant, service).public_key.hex(),
                    "valid_from": "2000-01-01T00:00:00Z",
                },
            )
            assert answer.status_code == 201, answer.text
            keyids[service] = answer.json()["keyid"]
    return keyids


def decisions(count: int, *, seed: int, tenant: str = TENANT) -> list[Decision]:
    return list(demo_decisions(count, seed=seed, tenant=tenant))


def signed(decision: Decision, shape: Callable[[Decision], Decision] | None = None) -> bytes:
    """The decision (rewritten by `shape`) signed with its tenant's demo service key."""
    return sign(shape(decision) if shape is not None else decision)


def array(*records: bytes) -> bytes:
    """A batch body: the envelopes as a JSON array, each exactly as signed."""
    return b"[" + b",".join(records) + b"]"


def edit_envelope(raw: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    envelope = msgspec.json.decode(raw)
    edit(envelope)
    return msgspec.json.encode(envelope)


def edit_payload(raw: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """The envelope with its payload JSON edited and re-signed by the same demo key."""
    envelope = msgspec.json.decode(raw)
    payload = msgspec.json.decode(dsse.b64decode(envelope["payload"]))
    edit(payload)
    key = demo_signing_key(payload["tenant"], payload["service"])
    resigned = dsse.sign_envelope(
        envelope["payloadType"],
        msgspec.json.encode(payload),
        key,
        envelope["signatures"][0]["keyid"],
    )
    return dsse.encode_envelope(resigned)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text, 0 when the series is absent."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    series = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if _normalized(sample) == series:
            return float(value)
    return 0.0


def _normalized(sample: str) -> str:
    name, brace, rest = sample.partition("{")
    if not brace:
        return name
    labels = sorted(re.findall(r'(\w+="(?:[^"\\]|\\.)*")', rest))
    return f"{name}{{{','.join(labels)}}}"
