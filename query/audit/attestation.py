"""How a decision is attested: who vouches for its content, and what it was built from.

A decision is `producer-signed` when the service that made it signed it with its own
registered key, and `ledger-attested` when the ledger built it from unsigned input
(OpenTelemetry spans) and signed it with its record key (the `prov-replay` key) on arrival.
The level is read from the key that verified the signature (its service), never from
anything the payload says: a payload can claim to come from spans, or not, but only the
ledger holds the record key, and the key registry refuses every other key a keyid starting
with `prov-replay:`. So the keyid alone tells the levels apart offline: `prov verify-report`
checks that the signing key's keyid and service agree, and recomputes the report's
`attestation` member from the signing key in its evidence.

What the payload says of its source (`attributes.otlp`: the trace it was built from,
whether that trace was incomplete) and why replay cannot rebuild its requests
(`attributes["prov.not_replayable"]`) is shown beside the level, as the payload's word.

This module needs no database: the why-report, the offline check, the pages and the
terminal share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ledger.records.decision import NOT_REPLAYABLE_ATTRIBUTE
from ledger.records.replay import RECORD_KEYID_PREFIX
from ledger.records.signed import LEDGER_ATTESTED, PRODUCER_SIGNED, attestation_of

# No key verifies the signature (or the record does not decode): nobody vouches for it.
UNVERIFIED = "unverified"
OTLP_ATTRIBUTE = "otlp"

__all__ = [
    "LEDGER_ATTESTED",
    "PRODUCER_SIGNED",
    "RECORD_KEYID_PREFIX",
    "UNVERIFIED",
    "attestation_view",
    "describe",
    "level_of_key",
    "level_of_keyid",
]


# The level a signature verified under a key registered for a service gives a decision.
level_of_key = attestation_of


def level_of_keyid(keyid: str) -> str:
    """The level a keyid alone tells, offline: the same as `level_of_key` gives for a key
    whose keyid and service agree, which `prov verify-report` checks."""
    return LEDGER_ATTESTED if keyid.startswith(RECORD_KEYID_PREFIX) else PRODUCER_SIGNED


def source_of(decision: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the payload says it was built from: the OpenTelemetry trace, when it carries
    `attributes.otlp`. Only well-typed members are taken, since a producer may write
    anything under its attributes."""
    attributes = (decision or {}).get("attributes")
    otlp = attributes.get(OTLP_ATTRIBUTE) if isinstance(attributes, dict) else None
    if not isinstance(otlp, dict):
        return None

    def text(name: str) -> str | None:
        value = otlp.get(name)
        return value if isinstance(value, str) else None

    return {
        "kind": "opentelemetry",
        "trace_id": text("trace_id"),
        "span_id": text("span_id"),
        "service": text("service"),
        "incomplete": otlp.get("incomplete") is True,
    }


def not_replayable(decision: Mapping[str, Any] | None) -> str | None:
    """The payload's sentence on why replay cannot rebuild the decision's requests."""
    attributes = (decision or {}).get("attributes")
    reason = attributes.get(NOT_REPLAYABLE_ATTRIBUTE) if isinstance(attributes, dict) else None
    return reason if isinstance(reason, str) else None


def describe(level: str, source: Mapping[str, Any] | None) -> str:
    """One sentence on what the level means for this decision."""
    spans = source is not None
    if level == LEDGER_ATTESTED:
        built = "from OpenTelemetry spans " if spans else "from unsigned input "
        return (
            f"built by the ledger {built}and signed with its record key on arrival; "
            "the producer did not sign it"
        )
    if level == PRODUCER_SIGNED:
        return "signed by the producing service's own registered key" + (
            " (built from OpenTelemetry spans by a collector holding that key)" if spans else ""
        )
    return "no registered key verifies the signature: nobody vouches for this content"


def attestation_view(
    decision: Mapping[str, Any] | None, signing_key: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The report's `attestation` member: the level given by `signing_key` (the registered
    key the signature verified under, as the report's evidence carries it; None when none
    does), with what the payload says of its source and replayability."""
    keyid = None if signing_key is None else signing_key["keyid"]
    level = (
        UNVERIFIED
        if signing_key is None or decision is None
        else level_of_key(signing_key["service"])
    )
    source = source_of(decision)
    return {
        "level": level,
        "keyid": keyid,
        "detail": describe(level, source),
        "source": source,
        "not_replayable": not_replayable(decision),
    }
