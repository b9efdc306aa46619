"""Checking a webhook from the ledger before acting on it (docs/webhooks.md).

A receiver passes the body bytes exactly as received, the `Prov-Signature` header and the
ledger's verifier key (`prov checkpoint --verifier-key`, or `verifier_key` of
`GET /v1/log`, pinned once), and gets the event as a dict, or `WebhookInvalid`:

    event = verify_webhook(request.body, request.headers["Prov-Signature"], VERIFIER_KEY)

Delivery is at least once: deduplicate on `event["id"]`, which is the same on every retry.
Every event type is checked alike: `decision.stale` (its `decisions`) and `monitor.breach`
(its `breach` record, log `index` and stored `envelope`) are signed over the whole body.
No server dependency is needed: this imports with the base install.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ingest.client.errors import ClientError
from ledger.errors import NoteError
from ledger.log.note import NoteVerifier
from ledger.notify.webhook import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    WEBHOOK_PAYLOAD_TYPE,
    check_signature,
)

__all__ = [
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
    "SIGNATURE_HEADER",
    "WEBHOOK_PAYLOAD_TYPE",
    "WebhookInvalid",
    "verify_webhook",
]


class WebhookInvalid(ClientError):
    """A webhook that does not prove it came from the ledger: its signature is missing,
    malformed, made with another key or not over these bytes, or its body is not an event.
    Answer it with an error and act on nothing in it."""

    kind = "webhook-invalid"
    title = "Webhook does not verify"


_decoder = msgspec.json.Decoder(dict[str, Any])


def verify_webhook(
    body: bytes, header: str | None, verifier_key: str | NoteVerifier
) -> dict[str, Any]:
    """The event in `body` if `header` is the ledger's signature over exactly these bytes,
    under `verifier_key` (the note verifier key string, or its parsed form)."""
    if isinstance(verifier_key, str):
        try:
            verifier = NoteVerifier.parse(verifier_key)
        except NoteError as error:
            raise WebhookInvalid(f"the verifier key does not parse: {error}") from None
    else:
        verifier = verifier_key
    if not header:
        raise WebhookInvalid(f"no {SIGNATURE_HEADER} header")
    check = check_signature(body, header, verifier)
    if not check:
        raise WebhookInvalid(f"{SIGNATURE_HEADER}: {check.fault}")
    try:
        event = _decoder.decode(body)
    except msgspec.DecodeError as error:
        raise WebhookInvalid(f"the signed body is not a JSON object: {error}") from None
    if not isinstance(event.get("type"), str) or not isinstance(event.get("id"), str):
        raise WebhookInvalid("the signed body names no event type and id")
    return event
