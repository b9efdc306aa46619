"""`prov subscriptions`: webhook subscriptions and their deliveries, on the database directly
(as `prov keys` works), for operators; the HTTP API serves the tenants' admins."""

from __future__ import annotations

import click

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
from ledger.storage.db import write_transaction
from service.cli.common import emit, ledger_options, open_ledger
from service.settings import Settings


@click.group()
def subscriptions() -> None:
    """Webhook subscriptions: where a tenant's events (decision.stale) are sent, signed."""


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
