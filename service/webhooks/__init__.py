"""Webhooks: the worker that delivers the outbox's notifications (docs/webhooks.md).

`delivery` sends each due outbox row as signed `decision.stale` events with retries,
backoff and a dead-letter state; `metrics` counts deliveries and reports the outbox; the
lifespan in `worker` runs one delivery thread in each server process. The outbox itself,
and the subscriptions, are the core's (`ledger.notify`).
"""
