"""Admin routes: the tenant's webhook subscriptions and their deliveries (docs/webhooks.md).

The tenant is always the admin key's: another tenant's subscription answers 404, exactly as
a missing one. Each route is a thin shell over `ledger.notify.subscriptions`.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import delete, get, post
from litestar.params import Parameter
from sqlalchemy import Engine

from ledger.keys.apikeys import ADMINS, ApiKey
from ledger.log.sequencer import now_micros
from ledger.notify.outbox import DeliveryState
from ledger.notify.subscriptions import (
    MAX_URL_CHARS,
    create_subscription,
    list_deliveries,
    list_subscriptions,
    remove_subscription,
    retry_delivery,
)
from ledger.storage.db import write_transaction

EventType = Annotated[str, msgspec.Meta(max_length=64)]


class SubscriptionRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL_CHARS)]
    events: Annotated[list[EventType], msgspec.Meta(max_length=16)]
    description: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class SubscriptionView(msgspec.Struct):
    id: str
    tenant: str
    url: str
    events: list[str]
    description: str | None
    created_at: str
    removed_at: str | None


class SubscriptionList(msgspec.Struct):
    subscriptions: list[SubscriptionView]


class DeliveryView(msgspec.Struct):
    id: int
    subscription_id: str
    event_type: str
    state: DeliveryState
    attempts: int
    last_status: int | None
    last_error: str | None
    change_index: int
    first_index: int
    last_index: int
    delivered_through: int
    created_at: str
    next_attempt_at: str | None
    delivered_at: str | None


class DeliveryList(msgspec.Struct):
    deliveries: list[DeliveryView]


@post(
    "/",
    opt={"roles": ADMINS},
    summary="Subscribe a URL to events",
    tags=["subscriptions"],
    sync_to_thread=True,
)
def subscribe(data: SubscriptionRequest, caller: ApiKey, engine: Engine) -> SubscriptionView:
    """Send the tenant's events of the given types to `url`, signed with the ledger key."""
    with write_transaction(engine) as connection:
        made = create_subscription(
            connection,
            tenant=caller.tenant,
            url=data.url,
            events=data.events,
            description=data.description,
            now_us=now_micros(),
        )
    return msgspec.convert(made.to_json(), SubscriptionView)


@get(
    "/",
    opt={"roles": ADMINS},
    summary="List subscriptions",
    tags=["subscriptions"],
    sync_to_thread=True,
)
def subscriptions_of_tenant(caller: ApiKey, engine: Engine) -> SubscriptionList:
    with engine.connect() as connection:
        found = list_subscriptions(connection, caller.tenant)
    return SubscriptionList([msgspec.convert(s.to_json(), SubscriptionView) for s in found])


@delete(
    "/{subscription_id:str}",
    opt={"roles": ADMINS},
    summary="Remove a subscription",
    tags=["subscriptions"],
    status_code=200,
    sync_to_thread=True,
)
def unsubscribe(subscription_id: str, caller: ApiKey, engine: Engine) -> SubscriptionView:
    """Stop sending to the subscription; its pending deliveries are dropped."""
    with write_transaction(engine) as connection:
        removed = remove_subscription(connection, caller.tenant, subscription_id, now_micros())
    return msgspec.convert(removed.to_json(), SubscriptionView)


@get(
    "/{subscription_id:str}/deliveries",
    opt={"roles": ADMINS},
    summary="List a subscription's deliveries",
    tags=["subscriptions"],
    sync_to_thread=True,
)
def deliveries(
    subscription_id: str,
    caller: ApiKey,
    engine: Engine,
    # `state` is a name the framework reserves for the app's state.
    delivery_state: Annotated[DeliveryState | None, Parameter(query="state")] = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
) -> DeliveryList:
    """The subscription's outbox rows, newest first; `state=dead` lists its dead letters."""
    with engine.connect() as connection:
        found = list_deliveries(
            connection, caller.tenant, subscription_id, state=delivery_state, limit=limit
        )
    return DeliveryList([msgspec.convert(d.to_json(), DeliveryView) for d in found])


@post(
    "/{subscription_id:str}/deliveries/{delivery_id:int}/retry",
    opt={"roles": ADMINS},
    summary="Retry a dead delivery",
    tags=["subscriptions"],
    status_code=200,
    sync_to_thread=True,
)
def retry(subscription_id: str, delivery_id: int, caller: ApiKey, engine: Engine) -> DeliveryView:
    """Send a dead delivery again from where it stopped, with a fresh count of attempts."""
    with write_transaction(engine) as connection:
        again = retry_delivery(
            connection, caller.tenant, subscription_id, delivery_id, now_micros()
        )
    return msgspec.convert(again.to_json(), DeliveryView)
