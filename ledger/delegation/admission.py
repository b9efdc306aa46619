"""Admission step 8: what each record kind's authority requires before it may be stored.

- A decision is held to its tenant's delegation mode (`ledger.delegation.mode`). When it is
  checked, rules 1 to 8 run at the current time against the principals enrolled when the
  batch was admitted; rules 9 and 10 are left to the sequencer (`ledger.indexes.delegations`),
  which checks them under the log's lock.
- A principal record needs nothing more: its schema and its signing key (steps 4 to 7)
  already say that the tenant's principal service enrolled it.
- A revocation record must carry a ``/ucan/revoke`` invocation, signed by the issuer of
  the delegation it carries, that names that delegation's bytes by CID.

Each gives the index row the sequencer writes with the record, or raises
`DelegationInvalid` naming the rule that failed. A decision's chain is checked in a second
pass over the batch, once the principals its roots name are read in one query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import Engine

from ledger.delegation import ucan
from ledger.delegation.chain import Facts, Principal, Rule, rejection, verify_chain
from ledger.delegation.mode import DEFAULT_MODE, DelegationMode
from ledger.delegation.principals import load_principals
from ledger.delegation.records import PrincipalRecord, RevocationRecord
from ledger.indexes.delegations import AuthorityRow, InvocationRow, PrincipalRow, RevocationRow
from ledger.records.decision import Decision, DelegationLink

Record = Decision | PrincipalRecord | RevocationRecord


@dataclass(frozen=True, slots=True)
class PendingChain:
    """A decision's chain, kept without the rest of the decision until the batch's
    principals are read (holding whole decoded decisions makes garbage collection costly)."""

    tenant: str
    invocation: bytes
    links: list[DelegationLink]


def authorize(
    record: Record, modes: Mapping[str, DelegationMode]
) -> AuthorityRow | PendingChain | None:
    """Step 8 as far as it goes without principals: the record's index row, or the chain
    still to check (`verify_pending`); `DelegationInvalid` if the record is refused."""
    match record:
        case PrincipalRecord():
            return PrincipalRow(record.did, record.name, record.display_name, record.kind)
        case RevocationRecord():
            return _revocation(record)
        case Decision():
            return _decision(record, modes.get(record.tenant, DEFAULT_MODE))


def load_roots(engine: Engine, pending: Iterable[PendingChain]) -> dict[str, dict[str, Principal]]:
    """The enrolled principals the pending chains start from, by tenant and DID, in one
    query."""
    roots = {(chain.tenant, chain.links[0].iss) for chain in pending if chain.links}
    with engine.connect() as connection:
        enrolled = load_principals(connection, roots)
    by_tenant: dict[str, dict[str, Principal]] = {}
    for (tenant, did), principal in enrolled.items():
        by_tenant.setdefault(tenant, {})[did] = principal
    return by_tenant


def verify_pending(
    chain: PendingChain, principals: Mapping[str, Mapping[str, Principal]], at_us: int
) -> InvocationRow:
    """Rules 1 to 8 for a pending chain at `at_us`; rules 9 and 10 are the sequencer's."""
    facts = Facts(principals.get(chain.tenant, {}))
    check = verify_chain(chain.invocation, chain.links, at_us, facts)
    failure = check.failure
    if failure is not None:
        hop, outcome = failure
        raise rejection(outcome.rule, outcome.detail, "/payload" + hop.pointer)
    invoked = check.invocation.token
    root = check.root
    # Rules 1 and 3 held, so the invocation decoded and the chain has a root.
    assert isinstance(invoked, ucan.Invocation)
    assert root is not None
    cids = tuple(ucan.cid_of(link.token) for link in chain.links)
    return InvocationRow(invoked.cid, invoked.iss, invoked.nonce, root, cids)


def _decision(decision: Decision, mode: DelegationMode) -> PendingChain | None:
    if mode is DelegationMode.OFF:
        return None
    if decision.invocation is None:
        if mode is DelegationMode.REQUIRED:
            raise rejection(
                Rule.SIGNATURE,
                f"tenant {decision.tenant!r} requires an invocation and its delegation chain",
                "/payload/invocation",
            )
        return None
    return PendingChain(decision.tenant, decision.invocation, decision.delegation)


def _revocation(record: RevocationRecord) -> RevocationRow:
    try:
        revoked = ucan.decode_delegation(record.delegation)
    except ucan.TokenInvalid as error:
        raise rejection(
            Rule.SIGNATURE, f"not a delegation: {error}", "/payload/delegation"
        ) from None
    try:
        revocation = ucan.decode_invocation(record.revocation)
    except ucan.TokenInvalid as error:
        raise rejection(
            Rule.SIGNATURE, f"not an invocation: {error}", "/payload/revocation"
        ) from None
    where = "/payload/revocation"
    if not ucan.signature_valid(revocation):
        raise rejection(Rule.SIGNATURE, f"not signed by {revocation.iss}", where)
    if revocation.cmd != ucan.REVOKE_COMMAND:
        raise rejection(Rule.COMMAND, f"{revocation.cmd} is not {ucan.REVOKE_COMMAND}", where)
    if revocation.args.get("revoke") != revoked.cid:
        raise rejection(Rule.PROOFS, "args.revoke does not name the delegation's bytes", where)
    if revocation.iss != revoked.iss:
        raise rejection(
            Rule.ALIGNMENT,
            f"{revocation.iss} did not issue the delegation; {revoked.iss} did",
            where,
        )
    if revocation.sub != revoked.sub:
        raise rejection(Rule.SUBJECT, f"sub {revocation.sub} is not the delegation's", where)
    return RevocationRow(revoked.cid, revocation.iss)
