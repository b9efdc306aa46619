"""`prov subscriptions`: webhook subscriptions and their deliveries, on the database directly
(as `prov keys` works), for operators; the HTTP API serves the tenants' admins."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import click

from ingest.client.webhooks import WebhookInvalid, verify_webhook
from ledger.errors import NoteError
from ledger.log.note import NoteVerifier
from ledger.log.sequencer import now_micros
from ledger.notify.outbox import EVENT_TYPES, STATES, DeliveryState
from ledger.notify.subscriptions import (
    create_subscription,
    list_deliveries,
    list_subscriptions,
    remove_subscription,
    retry_delivery,
    tenant_of,
)
from ledger.notify.webhook import SIGNATURE_HEADER
from ledger.storage.db import write_transaction
from service.cli.common import Failed, emit, ledger_options, open_ledger
from service.settings import Settings


@click.group()
def subscriptions() -> None:
    """Webhook subscriptions: where a tenant's events (decision.stale, monitor.breach) are
    sent, signed."""


@subscriptions.command("add")
@click.argument("url")
@click.option("--tenant", required=True)
@click.option(
    "--event",
    "events",
    multiple=True,
    default=EVENT_TYPES,
    show_default=True,
    help="An event type to send (repeatable)",
)
@click.option("--description", help="A label for listings")
@ledger_options
def subscriptions_add(
    settings: Settings, url: str, tenant: str, events: tuple[str, ...], description: str | None
) -> None:
    """Send the tenant's events to URL (http or https); prints the subscription."""
    with write_transaction(open_ledger(settings).engine) as connection:
        made = create_subscription(
            connection,
            tenant=tenant,
            url=url,
            events=events,
            description=description,
            now_us=now_micros(),
        )
    emit(made.to_json())


@subscriptions.command("list")
@click.option("--tenant", help="Only this tenant's (default: every tenant's)")
@ledger_options
def subscriptions_list(settings: Settings, tenant: str | None) -> None:
    """List live subscriptions, one JSON line each."""
    with open_ledger(settings).engine.connect() as connection:
        for found in list_subscriptions(connection, tenant):
            emit(found.to_json())


@subscriptions.command("remove")
@click.argument("subscription_id", metavar="ID")
@ledger_options
def subscriptions_remove(settings: Settings, subscription_id: str) -> None:
    """Stop sending to subscription ID; its pending deliveries are dropped."""
    with write_transaction(open_ledger(settings).engine) as connection:
        tenant = tenant_of(connection, subscription_id)
        emit(remove_subscription(connection, tenant, subscription_id, now_micros()).to_json())


@subscriptions.command("deliveries")
@click.argument("subscription_id", metavar="ID")
@click.option("--state", type=click.Choice(STATES), help="Only deliveries in this state")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@ledger_options
def subscriptions_deliveries(
    settings: Settings, subscription_id: str, state: DeliveryState | None, limit: int
) -> None:
    """The deliveries of subscription ID, newest first, one JSON line each: state,
    attempts, the last status and error, the change they tell of."""
    with open_ledger(settings).engine.connect() as connection:
        tenant = tenant_of(connection, subscription_id)
        for delivery in list_deliveries(
            connection, tenant, subscription_id, state=state, limit=limit
        ):
            emit(delivery.to_json())


@subscriptions.command("retry")
@click.argument("subscription_id", metavar="ID")
@click.argument("delivery_id", type=click.IntRange(min=1), metavar="DELIVERY")
@ledger_options
def subscriptions_retry(settings: Settings, subscription_id: str, delivery_id: int) -> None:
    """Send dead delivery DELIVERY of subscription ID again, from where it stopped."""
    with write_transaction(open_ledger(settings).engine) as connection:
        tenant = tenant_of(connection, subscription_id)
        emit(
            retry_delivery(connection, tenant, subscription_id, delivery_id, now_micros()).to_json()
        )


COMMANDS = [subscriptions]


@subscriptions.command("listen")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=9000, show_default=True)
@click.option("--verifier-key", required=True, help="The ledger's note verifier key")
@click.option("--count", type=click.IntRange(min=1), help="Exit after this many verified events")
def subscriptions_listen(host: str, port: int, verifier_key: str, count: int | None) -> None:
    """A webhook receiver for trying subscriptions out: print each event whose signature
    verifies under the ledger's key as a JSON line (answer 204), refuse any other (401).
    Subscribe it with `prov subscriptions add http://HOST:PORT/ --tenant T`."""
    try:
        verifier = NoteVerifier.parse(verifier_key)
    except NoteError as error:
        raise Failed(f"verifier key: {error}") from None
    received: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                event = verify_webhook(body, self.headers.get(SIGNATURE_HEADER), verifier)
            except WebhookInvalid as error:
                click.echo(f"prov: refused a webhook: {error}", err=True)
                self.send_response(401)
                self.end_headers()
                return
            self.send_response(204)
            self.end_headers()
            received.append(event)
            emit(event)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per event is printed above; nothing else

    # One request at a time: the ledger sends each event once per attempt, and --count is exact.
    with HTTPServer((host, port), Receiver) as server:
        click.echo(f"listening on http://{host}:{server.server_address[1]}/", err=True)
        while count is None or len(received) < count:
            server.handle_request()
