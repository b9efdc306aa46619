"""Delegation chains: the rules that prove, hop by hop and offline, who authorized a decision.

A decision record carries a UCAN invocation and the delegations that prove it (root first).
An auditor applies these rules at the decision's ledger-anchored time T (admission uses the
current time, moments before integration). They are numbered as docs/delegation.md numbers
them, and each failure names its rule:

1. Each token is a well-formed envelope whose signature verifies under the key in its
   issuer's did:key, and the record's decoded copy of each delegation agrees with it.
2. Every CID in the invocation's `prf` is the CID of the delegation at that place.
3. The root delegation has ``iss == sub``, and that DID is an enrolled principal.
4. Each delegation's `aud` is the next one's `iss`; the last audience is the invoker.
5. `sub` is the same along the chain, the invocation's included, and never null.
6. Every hop's command covers the invocation's, and extends its parent's.
7. The invocation's arguments satisfy every hop's policy.
8. ``nbf <= T <= exp`` for every token, and a delegation expires no later than its parent.
9. No delegation in the chain was revoked by a record earlier in the log.
10. No earlier record carries the same invocation (CID) or the invoker's same nonce.

Rules 3, 9 and 10 need the ledger's state, which the caller passes as `Facts`; a rule whose
facts it does not know is reported as not checked. Admission leaves 9 and 10 to the
sequencer, which checks them under the log's lock, in log order.

`verify_chain` returns a `ChainCheck` whose truth value means "every rule verified"; its
`failure` is the first rule that did not, at the first hop that broke it.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import msgspec

from ledger.delegation import ucan
from ledger.delegation.policy import Policy, PolicyError, parse_policy
from ledger.errors import DelegationInvalid
from ledger.log.entry import rfc3339
from ledger.records.decision import DelegationLink

VALID, INVALID, NOT_CHECKED = "valid", "invalid", "not-checked"
MAX_HOPS = 16  # far beyond any real chain; bounds the work one record can ask for
_SECOND_US = 1_000_000


class Rule(IntEnum):
    SIGNATURE = 1
    PROOFS = 2
    ROOT = 3
    ALIGNMENT = 4
    SUBJECT = 5
    COMMAND = 6
    POLICY = 7
    TIME = 8
    REVOCATION = 9
    REPLAY = 10

    @property
    def slug(self) -> str:
        """The rule's stable name, as errors and reports spell it."""
        return _SLUGS[self]


_SLUGS = {
    Rule.SIGNATURE: "signature",
    Rule.PROOFS: "proofs",
    Rule.ROOT: "root-principal",
    Rule.ALIGNMENT: "principal-alignment",
    Rule.SUBJECT: "subject",
    Rule.COMMAND: "command",
    Rule.POLICY: "policy",
    Rule.TIME: "time-bounds",
    Rule.REVOCATION: "revocation",
    Rule.REPLAY: "replay",
}


# What a rule that held says of the whole chain (rules 3 and 10 say it of their one hop).
_SUMMARIES = {
    Rule.SIGNATURE: "every token is signed by its issuer",
    Rule.PROOFS: "prf names every delegation by the CID of its bytes",
    Rule.ALIGNMENT: "each audience is the next issuer, and the last one is the invoker",
    Rule.SUBJECT: "every token is about the root's subject",
    Rule.COMMAND: "every hop's command covers the invocation's and extends its parent's",
    Rule.POLICY: "the arguments satisfy every hop's policy",
    Rule.TIME: "every token is in force at T",
    Rule.REVOCATION: "no delegation in the chain was revoked before T",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    rule: Rule
    status: str  # VALID, INVALID or NOT_CHECKED
    detail: str


@dataclass(frozen=True, slots=True)
class Principal:
    """A DID enrolled in a tenant as a named human or service."""

    did: str
    name: str
    display_name: str | None
    kind: str


@dataclass(frozen=True, slots=True)
class Facts:
    """What the ledger knows at T, for the rules that depend on it."""

    # Principals enrolled in the record's tenant before T, by DID (rule 3).
    principals: Mapping[str, Principal]
    # CIDs of delegations revoked before T (rule 9); None when the caller does not know.
    revoked: Collection[bytes] | None = None
    # Whether an earlier record carries this invocation (rule 10); None when not known.
    replayed: bool | None = None


@dataclass(slots=True)
class Hop:
    """One token of the chain, a delegation or the invocation at its end, and how each rule
    that applies to it came out."""

    pointer: str  # where the token sits in the decision payload
    raw: bytes
    token: ucan.Delegation | ucan.Invocation | None = None
    outcomes: dict[Rule, Outcome] = field(default_factory=dict)

    def judge(self, rule: Rule, problem: str | None, fine: str = "") -> None:
        status = VALID if problem is None else INVALID
        self.outcomes[rule] = Outcome(rule, status, problem or fine)

    def skip(self, rule: Rule, why: str) -> None:
        self.outcomes[rule] = Outcome(rule, NOT_CHECKED, why)


@dataclass(slots=True)
class ChainCheck:
    """The outcome of every rule on every hop; true when every rule verified."""

    at_us: int
    delegations: list[Hop]
    invocation: Hop
    principal: Principal | None = None

    @property
    def hops(self) -> list[Hop]:
        return [*self.delegations, self.invocation]

    @property
    def root(self) -> str | None:
        """The DID at the root of the chain, when the root delegation decodes."""
        token = self.delegations[0].token if self.delegations else None
        return None if token is None else token.iss

    def outcome(self, rule: Rule) -> Outcome:
        """The rule over the whole chain: its first failure, else whether it was checked."""
        found = [(hop, hop.outcomes[rule]) for hop in self.hops if rule in hop.outcomes]
        for hop, outcome in found:
            if outcome.status == INVALID:
                return Outcome(rule, INVALID, f"{hop.pointer}: {outcome.detail}")
        for _, outcome in found:
            if outcome.status == NOT_CHECKED:
                return outcome
        if not found:
            return Outcome(rule, NOT_CHECKED, "not reached: an earlier rule failed")
        return Outcome(rule, VALID, _SUMMARIES.get(rule) or found[0][1].detail)

    @property
    def rules(self) -> list[Outcome]:
        return [self.outcome(rule) for rule in Rule]

    @property
    def failure(self) -> tuple[Hop, Outcome] | None:
        """The first rule that failed, at the first hop that broke it."""
        for rule in Rule:
            for hop in self.hops:
                outcome = hop.outcomes.get(rule)
                if outcome is not None and outcome.status == INVALID:
                    return hop, outcome
        return None

    def __bool__(self) -> bool:
        return all(outcome.status == VALID for outcome in self.rules)


def rejection(rule: Rule, detail: str, pointer: str) -> DelegationInvalid:
    """The admission error for a broken rule, pointing into the record's envelope."""
    return DelegationInvalid(int(rule), rule.slug, detail, pointer=pointer)


def clear_caches() -> None:
    """Forget what this process decoded, verified and parsed of the tokens it has seen, so
    that the next check of a chain does all its work again (benchmarks measure that)."""
    for cached in (ucan.decode_delegation, ucan.public_key_from_did, _delegation_signed, _policy):
        cached.cache_clear()


def command_for(decision_type: str) -> str:
    """The command a decision of this type invokes by convention: ``loan.approve`` is
    ``/loan/approve``."""
    return "/" + decision_type.replace(".", "/")


def links_for(tokens: Sequence[bytes]) -> list[DelegationLink]:
    """The record's `delegation` entries for delegation tokens (root first): each token
    with the fields an index or a reader shows, decoded from it."""
    links = []
    for token in tokens:
        decoded = ucan.decode_delegation(token)
        links.append(
            DelegationLink(
                token=token,
                iss=decoded.iss,
                aud=decoded.aud,
                sub=decoded.sub,
                cmd=decoded.cmd,
                exp=decoded.exp,
            )
        )
    return links


def verify_chain(
    invocation: bytes, links: Sequence[DelegationLink], at_us: int, facts: Facts
) -> ChainCheck:
    """Apply every rule to the invocation and its chain (root first) at time `at_us`."""
    check = ChainCheck(
        at_us,
        [Hop(f"/delegation/{position}", link.token) for position, link in enumerate(links)],
        Hop("/invocation", invocation),
    )
    if len(links) > MAX_HOPS:
        check.invocation.judge(
            Rule.SIGNATURE, f"the chain has {len(links)} delegations; at most {MAX_HOPS} are read"
        )
        return check
    _signatures(check, links)
    invoked = check.invocation.token
    if isinstance(invoked, ucan.Invocation):
        _proofs(check, invoked, links)
    _root(check, facts)
    _alignment(check)
    _subject(check)
    _commands_and_policies(check)
    _time_bounds(check)
    _revocations(check, facts.revoked)
    if invoked is None:
        check.invocation.skip(Rule.REPLAY, "needs rule 1")
    elif facts.replayed is None:
        check.invocation.skip(Rule.REPLAY, "checked when the record is sequenced")
    else:
        check.invocation.judge(
            Rule.REPLAY,
            "an earlier record carries this invocation or its nonce" if facts.replayed else None,
            "no earlier record carries this invocation or its nonce",
        )
    return check


# --- 1. Envelopes and signatures -----------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _delegation_signed(token: bytes) -> bool:
    # A chain is shared by many records; its signatures are checked once per process.
    return ucan.signature_valid(ucan.decode_delegation(token))


def _signatures(check: ChainCheck, links: Sequence[DelegationLink]) -> None:
    for hop, link in zip(check.delegations, links, strict=True):
        try:
            hop.token = ucan.decode_delegation(link.token)
        except ucan.TokenInvalid as error:
            hop.judge(Rule.SIGNATURE, f"not a delegation token: {error}")
            continue
        problem = None if _delegation_signed(link.token) else _unsigned(hop.token.iss)
        hop.judge(Rule.SIGNATURE, problem or _disagreement(link, hop.token), "signed by iss")
    hop = check.invocation
    try:
        hop.token = ucan.decode_invocation(hop.raw)
    except ucan.TokenInvalid as error:
        hop.judge(Rule.SIGNATURE, f"not an invocation token: {error}")
        return
    problem = None if ucan.signature_valid(hop.token) else _unsigned(hop.token.iss)
    hop.judge(Rule.SIGNATURE, problem, "signed by iss")


def _unsigned(issuer: str) -> str:
    return f"the signature does not verify under the key of {issuer}"


def _disagreement(link: DelegationLink, token: ucan.Delegation) -> str | None:
    for name in ("iss", "aud", "sub", "cmd", "exp"):
        claimed, actual = getattr(link, name), getattr(token, name)
        if claimed != actual:
            return f"the record's {name} {claimed!r} is not the token's {actual!r}"
    return None


# --- 2. Proofs ------------------------------------------------------------------------------


def _proofs(check: ChainCheck, invoked: ucan.Invocation, links: Sequence[DelegationLink]) -> None:
    proofs = invoked.prf
    check.invocation.judge(
        Rule.PROOFS,
        None
        if len(proofs) == len(links)
        else f"prf names {len(proofs)} delegations; the record carries {len(links)}",
    )
    for position, (hop, link) in enumerate(zip(check.delegations, links, strict=True)):
        actual = ucan.cid_of(link.token)
        named = proofs[position] if position < len(proofs) else None
        hop.judge(
            Rule.PROOFS,
            None if named == actual else f"prf[{position}] does not name this token's bytes",
            f"prf[{position}] is {ucan.cid_text(actual)}",
        )


# --- 3 to 5. Principals ---------------------------------------------------------------------


def _root(check: ChainCheck, facts: Facts) -> None:
    if not check.delegations:
        check.invocation.judge(Rule.ROOT, "no delegation: a chain starts at a principal")
        return
    hop = check.delegations[0]
    root = hop.token
    if root is None:
        return
    check.principal = facts.principals.get(root.iss)
    if root.iss != root.sub:
        hop.judge(Rule.ROOT, f"the root's iss {root.iss} is not its sub {root.sub}")
    elif check.principal is None:
        hop.judge(Rule.ROOT, f"{root.iss} is not an enrolled principal of this tenant")
    else:
        hop.judge(Rule.ROOT, None, f"{root.iss} is enrolled as {check.principal.name}")


def _alignment(check: ChainCheck) -> None:
    hops = check.hops
    for hop, following in itertools.pairwise(hops):
        if hop.token is None or following.token is None:
            continue
        audience = hop.token.aud if isinstance(hop.token, ucan.Delegation) else None
        hop.judge(
            Rule.ALIGNMENT,
            None
            if audience == following.token.iss
            else f"aud {audience} is not the next issuer {following.token.iss}",
        )


def _subject(check: ChainCheck) -> None:
    root = check.delegations[0].token if check.delegations else None
    if root is None:
        return
    for hop in check.hops:
        if hop.token is None:
            continue
        subject = hop.token.sub
        if subject is None:
            hop.judge(Rule.SUBJECT, "sub is null; this profile has no powerline delegations")
        else:
            hop.judge(
                Rule.SUBJECT,
                None if subject == root.sub else f"sub {subject} is not the root's {root.sub}",
            )


# --- 6 and 7. Commands and policies ---------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _policy(token: bytes) -> Policy | PolicyError:
    try:
        return parse_policy(ucan.decode_delegation(token).pol)
    except PolicyError as error:
        return error


def _commands_and_policies(check: ChainCheck) -> None:
    invoked = check.invocation.token
    if not isinstance(invoked, ucan.Invocation):
        return
    parent: ucan.Delegation | None = None
    for hop in check.delegations:
        token = hop.token
        if not isinstance(token, ucan.Delegation):
            parent = None
            continue
        hop.judge(Rule.COMMAND, _command_problem(token.cmd, invoked.cmd, parent), token.cmd)
        parent = token
        policy = _policy(hop.raw)
        if isinstance(policy, PolicyError):
            hop.judge(Rule.POLICY, f"pol is not a policy: {policy}")
            continue
        failed = policy.first_failure(invoked.args)
        hop.judge(
            Rule.POLICY,
            None if failed is None else f"the arguments fail pol[{failed[0]}] {_json(failed[1])}",
            f"{len(policy.statements)} statements hold",
        )
    try:
        ucan.check_command(invoked.cmd)
    except ValueError as error:
        check.invocation.judge(Rule.COMMAND, str(error))
    else:
        check.invocation.judge(Rule.COMMAND, None, invoked.cmd)


def _command_problem(command: str, invoked: str, parent: ucan.Delegation | None) -> str | None:
    try:
        ucan.check_command(command)
    except ValueError as error:
        return str(error)
    if parent is not None and not ucan.covers(parent.cmd, command):
        return f"{command} widens its parent's {parent.cmd}"
    if not ucan.covers(command, invoked):
        return f"{command} does not cover the invoked {invoked}"
    return None


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


# --- 8. Time bounds -------------------------------------------------------------------------


def _time(seconds: int) -> str:
    return rfc3339(seconds * _SECOND_US)


def _time_bounds(check: ChainCheck) -> None:
    at = check.at_us
    parent_exp: int | None = None
    parent_known = False
    for hop in check.hops:
        token = hop.token
        if token is None:
            parent_known = False
            continue
        not_before = token.nbf if isinstance(token, ucan.Delegation) else None
        problem = None
        if not_before is not None and at < not_before * _SECOND_US:
            problem = f"not valid before {_time(not_before)}; T is {rfc3339(at)}"
        elif token.exp is not None and at > token.exp * _SECOND_US:
            problem = f"expired at {_time(token.exp)}; T is {rfc3339(at)}"
        elif (
            isinstance(token, ucan.Delegation)
            and parent_known
            and parent_exp is not None
            and (token.exp is None or token.exp > parent_exp)
        ):
            problem = f"expires after its parent, at {_time(parent_exp)}"
        hop.judge(Rule.TIME, problem, "never expires" if token.exp is None else "in force at T")
        parent_exp, parent_known = token.exp, isinstance(token, ucan.Delegation)


# --- 9. Revocations -------------------------------------------------------------------------


def _revocations(check: ChainCheck, revoked: Collection[bytes] | None) -> None:
    for hop in check.delegations:
        if hop.token is None:
            continue
        cid = hop.token.cid
        if revoked is None:
            hop.skip(Rule.REVOCATION, "checked when the record is sequenced")
        else:
            hop.judge(
                Rule.REVOCATION,
                f"{ucan.cid_text(cid)} was revoked before T" if cid in revoked else None,
            )
