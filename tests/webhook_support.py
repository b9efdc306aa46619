"""What the webhook tests share: a real HTTP receiver on loopback that records every POST
and answers as the test says, and decisions that a context change makes stale, signed and
sent through `POST /v1/records` as a service would."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import msgspec

from ledger.keys.signing import derive_keyid
from ledger.records import dsse
from ledger.records.context_change import (
    CONTEXT_CHANGE_PAYLOAD_TYPE,
    ContextChange,
    encode_context_change,
)
from ledger.records.decision import Decision, Dependency, Freshness
from service.demo.traffic import demo_signing_key
from tests.http_helpers import decisions, register_demo_keys, signed
from tests.http_server import TENANT, Server

STOCK_KEY = "stock:sku-1"
# Settings that make a test's deliveries and retries quick.
FAST_WEBHOOKS = {
    "PROV_WEBHOOK_POLL_SECONDS": "0.05",
    "PROV_WEBHOOK_TIMEOUT_SECONDS": "2",
    "PROV_WEBHOOK_LEASE_SECONDS": "3",
    "PROV_WEBHOOK_BACKOFF_BASE_SECONDS": "0.05",
    "PROV_WEBHOOK_BACKOFF_CAP_SECONDS": "0.2",
}

T = TypeVar("T")


@dataclass(frozen=True)
class Received:
    body: bytes
    headers: dict[str, str]  # names in lower case
    status: int  # what the receiver answered

    def json(self) -> dict[str, Any]:
        event: dict[str, Any] = msgspec.json.decode(self.body)
        return event


class Receiver:
    """An HTTP server on a loopback port, on its own thread. Every POST is recorded with
    the status it was answered; `status` sets that status, and `hold()` keeps requests
    waiting (the answer unsent) until `release()`."""

    def __init__(self) -> None:
        self.status = 200
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._released.set()
        self.waiting = threading.Event()  # set while a held request waits
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver.status  # as it was when the request came
                if not receiver._released.is_set():
                    receiver.waiting.set()
                    receiver._released.wait(timeout=60)
                with receiver._lock:
                    receiver.received.append(
                        Received(body, {k.lower(): v for k, v in self.headers.items()}, status)
                    )
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender is gone (killed while we held its request)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/hooks/prov"

    def hold(self) -> None:
        self.waiting.clear()
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def answered(self, status: int) -> list[Received]:
        with self._lock:
            return [item for item in self.received if item.status == status]

    @contextmanager
    def running(self) -> Iterator[Receiver]:
        self._thread.start()
        try:
            yield self
        finally:
            self.release()
            self._server.shutdown()
            self._server.server_close()


def eventually(probe: Callable[[], T], *, timeout: float = 30.0, what: str = "") -> T:
    """The first truthy result of `probe`, polled until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or probe}")
        time.sleep(0.05)


def subscribe(server: Server, admin_key: str, url: str) -> str:
    answer = httpx.post(
        f"{server.url}/v1/subscriptions",
        json={"url": url, "events": ["decision.stale"], "description": "test receiver"},
        headers=server.auth(admin_key),
    )
    assert answer.status_code == 201, answer.text
    subscription_id: str = answer.json()["id"]
    return subscription_id


def dependent_decisions(count: int, *, seed: int, version: str = "v1") -> list[Decision]:
    """Demo decisions that also depend on `STOCK_KEY` at `version`."""
    return [
        msgspec.structs.replace(
            decision,
            freshness=Freshness(depends_on=[Dependency(key=STOCK_KEY, version=version)]),
        )
        for decision in decisions(count, seed=seed)
    ]


def context_change(service: str, version: str, change_id: str) -> bytes:
    """A context-change envelope for `STOCK_KEY`, signed by `service`'s demo key."""
    change = ContextChange(
        id=change_id,
        tenant=TENANT,
        service=service,
        key=STOCK_KEY,
        version=version,
        changed_at=datetime.now(UTC),
    )
    key = demo_signing_key(TENANT, service)
    envelope = dsse.sign_envelope(
        CONTEXT_CHANGE_PAYLOAD_TYPE,
        encode_context_change(change),
        key,
        derive_keyid(key.public_key),
    )
    return dsse.encode_envelope(envelope)


def make_stale(
    server: Server, ingest_key: str, *, count: int, seed: int, change_id: str
) -> tuple[list[Decision], int]:
    """Append `count` decisions depending on `STOCK_KEY` v1, then a change of it to v2;
    returns the decisions and the change's log index."""
    made = dependent_decisions(count, seed=seed)
    with httpx.Client(base_url=server.url, headers=server.auth(ingest_key), timeout=30) as client:
        for decision in made:
            answer = client.post("/v1/records", content=signed(decision))
            assert answer.status_code == 201, answer.text
        answer = client.post(
            "/v1/records", content=context_change(made[0].service, "v2", change_id)
        )
        assert answer.status_code == 201, answer.text
        index: int = answer.json()["index"]
    return made, index


def prepare_tenant(server: Server) -> str:
    """Register the demo service keys; an ingest key for the tenant."""
    register_demo_keys(server, server.admin_key)
    return server.api_key("ingest")
