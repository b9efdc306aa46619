"""Webhook subscriptions and their deliveries, per tenant (docs/webhooks.md).

A subscription names a URL and the event types a tenant wants sent there. It is operational
state, not evidence: it is not a record in the log, and removing one stops its deliveries
(its outbox rows go with it) while the row stays, marked removed. The deliveries of a
subscription are its outbox rows (`ledger.notify.outbox`); a dead one can be sent again.

Every function takes the tenant and never reaches another tenant's rows: another tenant's
subscription is not found, exactly as a missing one.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, delete, insert, select, update

from ledger.errors import BadRequest, NotFound, ProvError
from ledger.log.entry import rfc3339
from ledger.notify.outbox import EVENT_TYPES, DeliveryState, requeue
from ledger.storage.schema import outbox, subscriptions

MAX_URL_CHARS = 2048
MAX_DESCRIPTION_CHARS = 256


class NotDeadLetter(ProvError):
    """Only a dead (dead-lettered) delivery can be sent again on request."""

    kind = "not-dead-letter"
    title = "Delivery is not dead-lettered"


def check_url(url: str) -> None:
    """An absolute http or https URL with a host, of at most `MAX_URL_CHARS` characters."""
    if len(url) > MAX_URL_CHARS:
        raise BadRequest(f"url is longer than {MAX_URL_CHARS} characters", pointer="/url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as error:
        raise BadRequest(f"url does not parse: {error}", pointer="/url") from None
    if parts.scheme not in ("http", "https"):
        raise BadRequest("url must be an http or https URL", pointer="/url")
    if not parts.hostname:
        raise BadRequest("url names no host", pointer="/url")
    if any(char.isspace() or ord(char) < 0x20 for char in url):
        raise BadRequest("url holds white space or a control character", pointer="/url")


def check_events(events: Sequence[str]) -> tuple[str, ...]:
    """The event types, each known and named once, in the order given."""
    if not events:
        raise BadRequest(f"events must name at least one of {list(EVENT_TYPES)}", pointer="/events")
    for position, event in enumerate(events):
        if event not in EVENT_TYPES:
            raise BadRequest(
                f"unknown event type {event!r}; known: {list(EVENT_TYPES)}",
                pointer=f"/events/{position}",
            )
    return tuple(dict.fromkeys(events))


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    tenant: str
    url: str
    events: tuple[str, ...]
    description: str | None
    created_us: int
    deleted_us: int | None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "url": self.url,
            "events": list(self.events),
            "description": self.description,
            "created_at": rfc3339(self.created_us),
            "removed_at": None if self.deleted_us is None else rfc3339(self.deleted_us),
        }


def _subscription(row: Sequence[Any]) -> Subscription:
    """A row of `_SUBSCRIPTION_COLUMNS`; its events are stored space-separated."""
    id_, tenant, url, events, description, created_us, deleted_us = row
    return Subscription(
        id_, tenant, url, tuple(events.split()), description, created_us, deleted_us
    )


_SUBSCRIPTION_COLUMNS = (
    subscriptions.c.id,
    subscriptions.c.tenant,
    subscriptions.c.url,
    subscriptions.c.events,
    subscriptions.c.description,
    subscriptions.c.created_us,
    subscriptions.c.deleted_us,
)


def create_subscription(
    connection: Connection,
    *,
    tenant: str,
    url: str,
    events: Sequence[str],
    description: str | None,
    now_us: int,
) -> Subscription:
    """Check and store a subscription; its deliveries start with the next event."""
    check_url(url)
    kinds = check_events(events)
    if description is not None and len(description) > MAX_DESCRIPTION_CHARS:
        raise BadRequest(
            f"description is longer than {MAX_DESCRIPTION_CHARS} characters",
            pointer="/description",
        )
    made = Subscription(
        f"sub_{secrets.token_hex(12)}", tenant, url, kinds, description, now_us, None
    )
    connection.execute(
        insert(subscriptions).values(
            id=made.id,
            tenant=tenant,
            url=url,
            events=" ".join(kinds),
            description=description,
            created_us=now_us,
        )
    )
    return made


def list_subscriptions(connection: Connection, tenant: str | None) -> list[Subscription]:
    """The live subscriptions of `tenant` (of every tenant when None), oldest first."""
    query = select(*_SUBSCRIPTION_COLUMNS).where(subscriptions.c.deleted_us.is_(None))
    if tenant is not None:
        query = query.where(subscriptions.c.tenant == tenant)
    rows = connection.execute(query.order_by(subscriptions.c.created_us, subscriptions.c.id))
    return [_subscription(row) for row in rows]


def get_subscription(connection: Connection, tenant: str, subscription_id: str) -> Subscription:
    """The tenant's live subscription; `NotFound` for a missing, removed or foreign one."""
    row = connection.execute(
        select(*_SUBSCRIPTION_COLUMNS).where(
            subscriptions.c.id == subscription_id,
            subscriptions.c.tenant == tenant,
            subscriptions.c.deleted_us.is_(None),
        )
    ).first()
    if row is None:
        raise NotFound(f"no subscription {subscription_id!r}")
    return _subscription(row)


def tenant_of(connection: Connection, subscription_id: str) -> str:
    """The tenant of a live subscription (for the CLI, which names no tenant)."""
    tenant = connection.execute(
        select(subscriptions.c.tenant).where(
            subscriptions.c.id == subscription_id, subscriptions.c.deleted_us.is_(None)
        )
    ).scalar_one_or_none()
    if tenant is None:
        raise NotFound(f"no subscription {subscription_id!r}")
    return str(tenant)


def remove_subscription(
    connection: Connection, tenant: str, subscription_id: str, now_us: int
) -> Subscription:
    """Stop sending to a subscription: marked removed, and its outbox rows deleted, so
    nothing more is delivered (a delivery already under way may still arrive)."""
    found = get_subscription(connection, tenant, subscription_id)
    connection.execute(
        update(subscriptions)
        .where(subscriptions.c.id == found.id, subscriptions.c.deleted_us.is_(None))
        .values(deleted_us=now_us)
    )
    connection.execute(delete(outbox).where(outbox.c.subscription_id == found.id))
    return Subscription(
        found.id, found.tenant, found.url, found.events, found.description, found.created_us, now_us
    )


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row of a subscription: the notification of one change, and how its
    delivery goes."""

    id: int
    subscription_id: str
    event_type: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    change_index: int
    first_index: int
    last_index: int
    cursor_index: int
    created_us: int
    next_attempt_us: int
    delivered_us: int | None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "subscription_id": self.subscription_id,
            "event_type": self.event_type,
            "state": self.state,
            "attempts": self.attempts,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "change_index": self.change_index,
            # The decisions this row covers lie among these log indexes; those up to
            # `delivered_through` were acknowledged.
            "first_index": self.first_index,
            "last_index": self.last_index,
            "delivered_through": self.cursor_index,
            "created_at": rfc3339(self.created_us),
            "next_attempt_at": rfc3339(self.next_attempt_us) if self.state == "pending" else None,
            "delivered_at": None if self.delivered_us is None else rfc3339(self.delivered_us),
        }


_DELIVERY_COLUMNS = (
    outbox.c.id,
    outbox.c.subscription_id,
    outbox.c.event_type,
    outbox.c.state,
    outbox.c.attempts,
    outbox.c.last_status,
    outbox.c.last_error,
    outbox.c.subject_idx,
    outbox.c.first_idx,
    outbox.c.last_idx,
    outbox.c.cursor_idx,
    outbox.c.created_us,
    outbox.c.next_attempt_us,
    outbox.c.delivered_us,
)


def list_deliveries(
    connection: Connection,
    tenant: str,
    subscription_id: str,
    *,
    state: DeliveryState | None = None,
    limit: int = 100,
) -> list[Delivery]:
    """The subscription's deliveries (in `state` when given), newest first."""
    get_subscription(connection, tenant, subscription_id)
    query = select(*_DELIVERY_COLUMNS).where(
        outbox.c.subscription_id == subscription_id, outbox.c.tenant == tenant
    )
    if state is not None:
        query = query.where(outbox.c.state == state)
    rows = connection.execute(query.order_by(outbox.c.id.desc()).limit(limit))
    return [Delivery(*tuple(row)) for row in rows]


def retry_delivery(
    connection: Connection, tenant: str, subscription_id: str, delivery_id: int, now_us: int
) -> Delivery:
    """Send a dead delivery again, from where it stopped, with a fresh count of attempts."""
    get_subscription(connection, tenant, subscription_id)
    row = connection.execute(
        select(*_DELIVERY_COLUMNS).where(
            outbox.c.id == delivery_id,
            outbox.c.subscription_id == subscription_id,
            outbox.c.tenant == tenant,
        )
    ).first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id} of subscription {subscription_id!r}")
    if not requeue(connection, tenant, delivery_id, now_us):
        raise NotDeadLetter(
            f"delivery {delivery_id} is {row.state}; only a dead delivery is retried"
        )
    again = connection.execute(select(*_DELIVERY_COLUMNS).where(outbox.c.id == delivery_id)).one()
    return Delivery(*tuple(again))
