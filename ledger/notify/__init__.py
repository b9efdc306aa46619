"""Telling others: the transactional outbox of notifications (docs/webhooks.md)."""
