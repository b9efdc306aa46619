"""The why-report's answer to "who authorized this": the chain check as JSON, and its evidence.

`chain_view` turns a decision payload (as JSON), the time T and the report's delegation
evidence into the report's verdict: the principal at the root, each hop with its command,
policy, expiry and the state of each rule, and the state of every rule over the whole chain.
It reads nothing else, so the server (`ledger.delegation.evidence` gathers the evidence from
the database) and `prov verify-report` (offline, from the saved report) compute the same value,
and a report whose verdict was edited no longer matches it.

The evidence holds what rule 3 needs as a proof: the principal record that enrolled the root
and the key that signed it, which the view verifies itself. Whether that enrollment and any
revocation came before the decision in the log, and whether the invocation is unique in the
ledger, are the server's word (`server_claims`): the evidence states them, and the view
applies them as stated.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import libipld
import msgspec

from ledger.delegation import ucan
from ledger.delegation.chain import (
    INVALID,
    NOT_CHECKED,
    VALID,
    ChainCheck,
    Facts,
    Hop,
    Principal,
    verify_chain,
)
from ledger.delegation.records import PrincipalRecord
from ledger.errors import RecordRejected
from ledger.keys.service_key import ServiceKey
from ledger.log.entry import rfc3339, to_micros
from ledger.records import dsse
from ledger.records.decision import DelegationLink
from ledger.records.signed import parse_record, verify_signer

# The evidence's word on rule 10, and what it makes of the rule.
_REPLAYED = {"unique": False, "replay": True, "unchecked": None}


def chain_view(
    decision: dict[str, Any] | None, at_us: int, evidence: dict[str, Any] | None
) -> dict[str, Any]:
    """The report's delegation verdict for `decision` at `at_us`, given its evidence."""
    chain = [] if decision is None else decision.get("delegation", [])
    invocation = None if decision is None else decision.get("invocation")
    if (invocation is None) != (evidence is None):
        raise ValueError("the report's delegation evidence does not fit its decision")
    if decision is None or (not chain and invocation is None):
        return {"status": "none", "detail": "the record carries no delegation chain"}
    if invocation is None:
        return {
            "status": NOT_CHECKED,
            "detail": "the record carries delegations but no invocation for them to prove, "
            "so they are shown as the service recorded them",
            "root": chain[0]["iss"],
            "hops": [
                {k: link.get(k) for k in ("iss", "aud", "sub", "cmd", "exp")} for link in chain
            ],
        }
    assert evidence is not None  # as the check above makes sure
    links = msgspec.convert(chain, list[DelegationLink])
    facts = Facts(
        _enrolled(evidence["principal"], decision["tenant"]),
        {_cid(revoked["cid"]) for revoked in evidence["revoked"]},
        _REPLAYED[evidence["uniqueness"]],
    )
    check = verify_chain(base64.b64decode(invocation), links, at_us, facts)
    principal = check.principal
    return {
        "status": VALID if check else INVALID if check.failure else NOT_CHECKED,
        "detail": _summary(check),
        "at": rfc3339(at_us),
        "root": check.root,
        "principal": None
        if principal is None
        else {
            "did": principal.did,
            "name": principal.name,
            "display_name": principal.display_name,
            "kind": principal.kind,
        },
        "rules": [
            {"rule": int(o.rule), "name": o.rule.slug, "status": o.status, "detail": o.detail}
            for o in check.rules
        ],
        "hops": [_hop(hop) for hop in check.delegations],
        "invocation": _hop(check.invocation),
    }


def server_claims(evidence: dict[str, Any] | None) -> list[str]:
    """The evidence's statements that only the server can vouch for."""
    if evidence is None:
        return []
    principal = "no enrollment" if evidence["principal"] is None else "the enrollment shown"
    return [
        f"delegation: {principal} of the root precedes the decision in the log",
        f"delegation: the log revokes {len(evidence['revoked'])} of the chain's delegations "
        "before the decision",
        f"delegation: the invocation's uniqueness in the ledger is {evidence['uniqueness']}",
    ]


def _enrolled(evidence: dict[str, Any] | None, tenant: str) -> dict[str, Principal]:
    """The principal the evidence proves enrolled in `tenant`: a principal record of that
    tenant, signed by the key it names, valid (and not revoked) when the record was made."""
    if evidence is None:
        return {}
    envelope = base64.b64decode(evidence["envelope"], validate=True)
    try:
        candidate = parse_record(envelope, max_bytes=len(envelope))
        record = candidate.decision
        if not isinstance(record, PrincipalRecord) or record.tenant != tenant:
            return {}
        key = _key(evidence["signing_key"])
        verify_signer(candidate, {key.keyid: key}, allow_revoked=True)
    except RecordRejected:
        return {}
    if key.revoked_us is not None and key.revoked_us <= to_micros(record.occurred_at):
        return {}
    return {record.did: Principal(record.did, record.name, record.display_name, record.kind)}


def _key(shown: dict[str, Any]) -> ServiceKey:
    def micros(text: str | None) -> int | None:
        return None if text is None else to_micros(datetime.fromisoformat(text))

    return ServiceKey(
        shown["keyid"],
        shown["tenant"],
        shown["service"],
        dsse.b64decode(shown["public_key"]),
        to_micros(datetime.fromisoformat(shown["valid_from"])),
        micros(shown["valid_until"]),
        micros(shown["revoked_at"]),
    )


def _cid(text: str) -> bytes:
    _, cid = libipld.decode_multibase(text)
    return cid


def _summary(check: ChainCheck) -> str:
    failure = check.failure
    if failure is not None:
        hop, outcome = failure
        return f"rule {int(outcome.rule)} ({outcome.rule.slug}) fails at {hop.pointer}: " + (
            outcome.detail
        )
    principal = check.principal
    who = (
        "an unenrolled principal"
        if principal is None
        else f"{principal.display_name or principal.name} <{principal.name}> ({principal.kind})"
    )
    hops = len(check.delegations)
    if not check:
        unchecked = [str(int(o.rule)) for o in check.rules if o.status != VALID]
        return f"by {who}, through {hops} delegations; rules {', '.join(unchecked)} not checked"
    return f"authorized by {who}, through {hops} delegations; every rule holds at T"


def _hop(hop: Hop) -> dict[str, Any]:
    token = hop.token
    view: dict[str, Any] = {
        "pointer": hop.pointer,
        "cid": ucan.cid_text(ucan.cid_of(hop.raw)),
        "iss": None if token is None else token.iss,
        "sub": None if token is None else token.sub,
        "cmd": None if token is None else token.cmd,
        "exp": None if token is None else token.exp,
    }
    if isinstance(token, ucan.Invocation):
        view |= {"args": _dag_json(token.args), "iat": token.iat, "nonce": token.nonce.hex()}
    else:
        delegated = token if isinstance(token, ucan.Delegation) else None
        view |= {
            "aud": None if delegated is None else delegated.aud,
            "pol": None if delegated is None else _dag_json(delegated.pol),
            "nbf": None if delegated is None else delegated.nbf,
        }
    view["checks"] = {rule.slug: outcome.status for rule, outcome in sorted(hop.outcomes.items())}
    return view


def _dag_json(value: Any) -> Any:
    """An IPLD value as JSON, with bytes in DAG-JSON's ``{"/": {"bytes": base64}}`` form."""
    match value:
        case bytes():
            return {"/": {"bytes": base64.b64encode(value).decode().rstrip("=")}}
        case list():
            return [_dag_json(item) for item in value]
        case dict():
            return {key: _dag_json(item) for key, item in value.items()}
    return value
