"""Webhook delivery in one process, against a real receiver on loopback: a change's
decisions go in chunks, each its own event; subscriptions see only their tenant's events
from their creation on, and removing one drops what it had pending; the backoff rule; what
the receivers' verifier refuses; the verifier imports without the server's packages; the
settings that would break delivery are refused; `prov subscriptions`."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from ingest.client.webhooks import WebhookInvalid, verify_webhook
from ledger.backoff import RetryPolicy
from ledger.keys.ed25519 import SigningKey
from ledger.ledger import Ledger
from ledger.log.note import NoteSigner
from ledger.log.receipt import receipt_keyid
from ledger.log.sequencer import now_micros
from ledger.notify import outbox as outbox_rows
from ledger.notify.subscriptions import create_subscription, list_deliveries, remove_subscription
from ledger.notify.webhook import sign_body
from ledger.storage.db import write_transaction
from ledger.storage.schema import outbox
from service.demo.traffic import register_demo_keys
from service.settings import Settings
from service.webhooks.delivery import Deliverer, DeliveryPolicy
from tests.http_helpers import SQLITE_ONLY
from tests.support import prov, sign
from tests.webhook_support import Receiver, context_change, dependent_decisions

POLICY = DeliveryPolicy.of(
    Settings(
        webhook_timeout_seconds=5,
        webhook_max_attempts=3,
        webhook_backoff_base_seconds=1,
        webhook_backoff_cap_seconds=8,
    )
)


def subscribe(ledger: Ledger, url: str, tenant: str = "acme") -> str:
    with write_transaction(ledger.engine) as connection:
        return create_subscription(
            connection,
            tenant=tenant,
            url=url,
            events=["decision.stale"],
            description=None,
            now_us=now_micros(),
        ).id


def append_stale(
    ledger: Ledger,
    count: int,
    *,
    seed: int,
    change_id: str,
    versions: tuple[str, str] = ("v1", "v2"),
) -> int:
    """`count` decisions on the stock key at one version, then its change to another; the
    change's log index."""
    made = dependent_decisions(count, seed=seed, version=versions[0])
    register_demo_keys(ledger.engine, "acme")
    ledger.append([sign(decision) for decision in made])
    [receipt] = ledger.append([context_change(made[0].service, versions[1], change_id)])
    assert not isinstance(receipt, Exception), receipt
    return receipt.index


def deliver(ledger: Ledger, *, chunk: int = outbox_rows.CHUNK) -> int:
    with httpx.Client(timeout=5) as http:
        return Deliverer(ledger, POLICY, http, chunk=chunk).run_once()


def test_a_change_is_sent_in_chunks_each_its_own_event(ledger: Ledger) -> None:
    with Receiver().running() as receiver:
        subscription = subscribe(ledger, receiver.url)
        change_index = append_stale(ledger, 7, seed=21, change_id="chg-chunks")
        assert deliver(ledger, chunk=3) == 1
        events = [
            verify_webhook(item.body, item.headers["prov-signature"], ledger.verifier.encode())
            for item in receiver.answered(200)
        ]
    with ledger.engine.connect() as connection:
        [row] = list_deliveries(connection, "acme", subscription)
    assert [event["id"] for event in events] == [f"{row.id}-0", f"{row.id}-3", f"{row.id}-6"]
    assert [event["more"] for event in events] == [True, True, False]
    assert [[d["index"] for d in event["decisions"]] for event in events] == [
        [0, 1, 2],
        [3, 4, 5],
        [6],
    ]
    assert {event["change"]["index"] for event in events} == {change_index}
    assert (row.state, row.cursor_index, row.attempts) == ("delivered", 6, 0)
    assert deliver(ledger) == 0  # nothing is due any more


def test_a_failed_chunk_is_sent_again_from_the_cursor(ledger: Ledger) -> None:
    with Receiver().running() as receiver:
        subscribe(ledger, receiver.url)
        append_stale(ledger, 5, seed=22, change_id="chg-cursor")
        [row] = outbox_rows.claim_due(ledger.engine, now_micros(), 10**6, limit=1)
        first = outbox_rows.stale_chunk(ledger.engine, row, 2)
        # The first chunk went through; the lease ends now, as if its worker had stopped.
        cursor = first.decisions[-1].index
        now = now_micros()
        outbox_rows.acknowledge(
            ledger.engine, row, cursor, status=200, done=False, now_us=now, lease_us=0
        )
        receiver.status = 503
        before = now_micros()
        deliver(ledger, chunk=2)
        with ledger.engine.connect() as connection:
            failed = connection.execute(
                select(outbox.c.state, outbox.c.attempts, outbox.c.cursor_idx)
            ).one()
            next_attempt = connection.execute(select(outbox.c.next_attempt_us)).scalar_one()
        assert tuple(failed) == ("pending", 1, 1)
        assert before <= next_attempt <= now_micros() + 1_000_000  # the first window: 1 s
        with ledger.engine.begin() as connection:  # due now, not after the backoff
            connection.execute(outbox.update().values(next_attempt_us=now_micros()))
        receiver.status = 200
        deliver(ledger, chunk=2)
        sent = [item.json() for item in receiver.received]
    assert [event["id"].split("-")[1] for event in sent] == ["2", "2", "4"]
    assert [item.status for item in receiver.received] == [503, 200, 200]


def test_subscriptions_see_their_tenant_from_their_creation_and_stop_when_removed(
    ledger: Ledger,
) -> None:
    with Receiver().running() as receiver:
        append_stale(ledger, 2, seed=23, change_id="chg-before")  # before any subscription
        register_demo_keys(ledger.engine, "globex")
        other = subscribe(ledger, receiver.url, tenant="globex")
        ours = subscribe(ledger, receiver.url)
        append_stale(ledger, 2, seed=24, change_id="chg-after", versions=("v2", "v3"))
        with ledger.engine.connect() as connection:
            assert [d.change_index for d in list_deliveries(connection, "acme", ours)] == [5]
            assert list_deliveries(connection, "globex", other) == []
        with write_transaction(ledger.engine) as connection:
            remove_subscription(connection, "acme", ours, now_micros())
        assert deliver(ledger) == 0
        append_stale(ledger, 1, seed=25, change_id="chg-removed", versions=("v3", "v4"))
        assert deliver(ledger) == 0
        assert receiver.received == []
    with ledger.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(outbox)).scalar_one() == 0


def test_a_decision_stale_at_birth_is_told_with_the_change_before_it(ledger: Ledger) -> None:
    with Receiver().running() as receiver:
        subscribe(ledger, receiver.url)
        change_index = append_stale(ledger, 1, seed=26, change_id="chg-earlier")
        [late] = dependent_decisions(1, seed=27)  # still on v1, which the change replaced
        [receipt] = ledger.append([sign(late)])
        assert not isinstance(receipt, Exception), receipt
        deliver(ledger)
        events = [item.json() for item in receiver.answered(200)]
    assert [[d["index"] for d in event["decisions"]] for event in events] == [[0], [receipt.index]]
    assert [event["change"]["index"] for event in events] == [change_index, change_index]


def test_backoff_doubles_with_full_jitter_up_to_the_cap_then_dead_letters() -> None:
    rng = random.Random(5)
    now = 1_000_000_000
    for attempts, window in [(1, 1.0), (2, 2.0)]:
        waits = [POLICY.next_attempt_us(attempts, None, now, rng) for _ in range(200)]
        assert all(w is not None and now <= w <= now + window * 1e6 for w in waits), waits
    assert POLICY.next_attempt_us(3, None, now, rng) is None  # the third failure is the last
    # A receiver's Retry-After is a floor, within the cap.
    assert POLICY.next_attempt_us(1, 5.0, now, rng) == now + 5_000_000
    assert POLICY.next_attempt_us(1, 3600.0, now, rng) == now + 8_000_000
    assert POLICY.backoff == RetryPolicy(max_retries=2, base_s=1, cap_s=8)


def test_the_verifier_refuses_what_the_ledger_did_not_sign() -> None:
    ledger_key = NoteSigner("prov.local/ledger", SigningKey.generate())
    verifier = ledger_key.verifier.encode()
    body = b'{"type":"decision.stale","id":"1-0"}'
    header = sign_body(body, ledger_key.key, receipt_keyid(ledger_key.verifier))
    assert verify_webhook(body, header, verifier) == {"type": "decision.stale", "id": "1-0"}
    assert verify_webhook(body, header, ledger_key.verifier)["id"] == "1-0"

    impostor = NoteSigner("prov.local/ledger", SigningKey.generate())
    forged = sign_body(body, impostor.key, receipt_keyid(impostor.verifier))
    reused_keyid = sign_body(body, impostor.key, receipt_keyid(ledger_key.verifier))
    cases = {
        "not the ledger's": forged,
        "does not verify": reused_keyid,
        "is not `keyid=": "sig=abc",
        "not base64": f"keyid={receipt_keyid(ledger_key.verifier)}, sig=abc",
        "no Prov-Signature": "",
    }
    for reason, bad in cases.items():
        with pytest.raises(WebhookInvalid, match=reason):
            verify_webhook(body, bad, verifier)
    with pytest.raises(WebhookInvalid, match="does not verify"):
        verify_webhook(body + b" ", header, verifier)
    with pytest.raises(WebhookInvalid, match="verifier key does not parse"):
        verify_webhook(body, header, "not-a-key")
    array = b"[1, 2]"
    signed_array = sign_body(array, ledger_key.key, receipt_keyid(ledger_key.verifier))
    with pytest.raises(WebhookInvalid, match="not a JSON object"):
        verify_webhook(array, signed_array, verifier)
    assert WebhookInvalid.kind == "webhook-invalid"


def test_the_verifier_imports_without_the_server_packages() -> None:
    script = (
        "import sys, ingest.client.webhooks, ingest.client;"
        "assert ingest.client.verify_webhook is ingest.client.webhooks.verify_webhook;"
        "bad = [m for m in ('sqlalchemy', 'litestar', 'uvicorn', 'psycopg') if m in sys.modules];"
        "print(bad)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"webhook_lease_seconds": 10.0}, "PROV_WEBHOOK_LEASE_SECONDS must exceed"),
        ({"webhook_backoff_base_seconds": 10_000.0}, "PROV_WEBHOOK_BACKOFF_BASE_SECONDS"),
    ],
)
def test_settings_that_would_break_delivery_are_refused(
    values: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**values)  # type: ignore[arg-type]
    env = {f"PROV_{name.upper()}": str(value) for name, value in values.items()}
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


# The CLI's own behaviour; the queries under it run on both engines in the tests above.
@SQLITE_ONLY
def test_the_subscriptions_commands(db_url: str, key_path: Path) -> None:
    def run(*args: str, code: int = 0) -> list[dict[str, object]]:
        done = prov(list(args), db=db_url, key=key_path)
        assert done.code == code, done.err
        return done.json_lines() if code == 0 else [{"err": done.err}]

    assert prov(["init"], db=db_url, key=key_path).code == 0
    [made] = run("subscriptions", "add", "https://hooks.example/prov", "--tenant", "acme")
    assert (made["tenant"], made["events"], made["removed_at"]) == (
        "acme",
        ["decision.stale", "monitor.breach"],  # every event type, unless --event names some
        None,
    )
    assert [item["id"] for item in run("subscriptions", "list")] == [made["id"]]
    assert run("subscriptions", "list", "--tenant", "globex") == []
    assert run("subscriptions", "deliveries", str(made["id"]), "--state", "dead") == []

    [refused] = run("subscriptions", "add", "ftp://hooks.example", "--tenant", "acme", code=1)
    assert refused["err"] == ("prov: bad-request: url must be an http or https URL (at /url)\n"), (
        refused
    )
    [unknown] = run(
        "subscriptions", "add", "https://h.example", "--tenant", "acme", "--event", "x", code=1
    )
    assert "unknown event type 'x'" in str(unknown["err"])
    [missing] = run("subscriptions", "retry", str(made["id"]), "1", code=1)
    assert str(missing["err"]).startswith("prov: not-found: no delivery 1")

    [removed] = run("subscriptions", "remove", str(made["id"]))
    assert removed["removed_at"] is not None
    assert run("subscriptions", "list") == []
    [gone] = run("subscriptions", "remove", str(made["id"]), code=1)
    assert str(gone["err"]).startswith("prov: not-found: no subscription")
