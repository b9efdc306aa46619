"""The chain rules, offline: chains of one to five hops verify, and each rule broken in turn
is refused with that rule named, at the hop that broke it."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import libipld
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.delegation import ucan
from ledger.delegation.chain import (
    INVALID,
    NOT_CHECKED,
    VALID,
    Facts,
    Principal,
    Rule,
    links_for,
    verify_chain,
)
from ledger.records.decision import DelegationLink

NOW = int(time.time())
HOUR = 3600


def key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


@dataclass
class Chain:
    """A chain from `keys[0]` (the human) through each hop to `keys[-1]` (the invoker)."""

    keys: list[Ed25519PrivateKey]
    tokens: list[bytes]
    invocation: bytes
    links: list[DelegationLink] = field(init=False)

    def __post_init__(self) -> None:
        self.links = links_for(self.tokens)

    @property
    def root(self) -> str:
        return ucan.did_of(self.keys[0])

    def enrolled(self, **facts: Any) -> Facts:
        principal = Principal(self.root, "alice@example.com", "Alice Liddell", "human")
        return Facts({self.root: principal}, **facts)


def build(
    hops: int = 3,
    *,
    edit: Callable[[int, dict[str, Any]], None] | None = None,
    invoke: Callable[[dict[str, Any]], None] | None = None,
    prefix: str = "chain",
) -> Chain:
    """A valid chain of `hops` delegations and its invocation, valid for the next hour;
    `edit` changes hop i's arguments to `ucan.delegate`, `invoke` the invocation's. Chains
    with the same prefix share their delegations (unless edited), never their invocation."""
    keys = [key(f"{prefix}/{position}") for position in range(hops + 1)]
    human = ucan.did_of(keys[0])
    tokens = []
    for position in range(hops):
        arguments: dict[str, Any] = {
            "issuer": keys[position],
            "audience": ucan.did_of(keys[position + 1]),
            "subject": human,
            "command": "/loan" if position == 0 else "/loan/approve",
            "policy": [["<=", ".amount", 50_000 - position]],
            "expiration": NOW + HOUR - position,
            "not_before": NOW - HOUR,
            # The same prefix gives the same delegations; each invocation is new.
            "nonce": ucan.derived_nonce(f"{prefix}/{position}".encode()),
        }
        if edit is not None:
            edit(position, arguments)
        tokens.append(ucan.delegate(**arguments))
    invocation: dict[str, Any] = {
        "invoker": keys[-1],
        "subject": human,
        "command": "/loan/approve",
        "args": {"amount": 12_000, "decision": "loan-1"},
        "proofs": tokens,
        "expiration": NOW + HOUR - hops,
    }
    if invoke is not None:
        invoke(invocation)
    return Chain(keys, tokens, ucan.invoke(**invocation))


def verify(chain: Chain, facts: Facts | None = None, at: int = NOW) -> Any:
    return verify_chain(
        chain.invocation,
        chain.links,
        at * 1_000_000,
        facts or chain.enrolled(revoked=frozenset(), replayed=False),
    )


def broken(check: Any) -> tuple[Rule, str, str]:
    """The failed rule, where, and what the rule says about it."""
    assert not check
    hop, outcome = check.failure
    return outcome.rule, hop.pointer, outcome.detail


@pytest.mark.parametrize("hops", [1, 2, 3, 4, 5])
def test_chains_of_one_to_five_hops_verify(hops: int) -> None:
    chain = build(hops)
    check = verify(chain)
    assert check, check.failure
    assert [outcome.status for outcome in check.rules] == [VALID] * 10
    assert check.root == chain.root
    assert check.principal is not None
    assert check.principal.name == "alice@example.com"
    assert all(hop.outcomes[Rule.SIGNATURE].status == VALID for hop in check.hops)


def _set(**changes: Any) -> Callable[[int, dict[str, Any]], None]:
    """Change the arguments of hop 1 (the second delegation)."""

    def edit(position: int, arguments: dict[str, Any]) -> None:
        if position == 1:
            arguments.update(changes)

    return edit


def _flip_signature(chain: Chain, position: int) -> Chain:
    token = bytearray(chain.tokens[position])
    token[20] ^= 0x01
    tokens = [*chain.tokens]
    tokens[position] = bytes(token)
    return Chain(chain.keys, tokens, chain.invocation)


STRANGER = ucan.did_of(key("stranger"))
BREAKS: list[tuple[str, Callable[[], tuple[Chain, Facts | None, int]], Rule, str, str]] = [
    (
        "bad signature",
        lambda: (_flip_signature(build(), 1), None, NOW),
        Rule.SIGNATURE,
        "/delegation/1",
        "does not verify",
    ),
    (
        "audience mismatch",
        lambda: (build(edit=_set(audience=STRANGER)), None, NOW),
        Rule.ALIGNMENT,
        "/delegation/1",
        "is not the next issuer",
    ),
    (
        "subject mismatch",
        lambda: (build(edit=_set(subject=STRANGER)), None, NOW),
        Rule.SUBJECT,
        "/delegation/1",
        "is not the root's",
    ),
    (
        "widened command",
        lambda: (build(edit=_set(command="/")), None, NOW),
        Rule.COMMAND,
        "/delegation/1",
        "widens its parent's /loan",
    ),
    (
        "invoked command outside the grant",
        lambda: (build(invoke=lambda i: i.update(command="/loan/delete")), None, NOW),
        Rule.COMMAND,
        "/delegation/1",
        "does not cover the invoked /loan/delete",
    ),
    (
        "unsatisfied policy",
        lambda: (build(invoke=lambda i: i.update(args={"amount": 49_999})), None, NOW),
        Rule.POLICY,
        "/delegation/2",
        "pol[0]",
    ),
    (
        "expired token",
        lambda: (build(), None, NOW + 2 * HOUR),
        Rule.TIME,
        "/delegation/0",
        "expired at",
    ),
    (
        "token not yet valid",
        lambda: (build(edit=_set(not_before=NOW + HOUR // 2)), None, NOW),
        Rule.TIME,
        "/delegation/1",
        "not valid before",
    ),
    (
        "a hop outliving its parent",
        lambda: (build(edit=_set(expiration=NOW + 2 * HOUR)), None, NOW),
        Rule.TIME,
        "/delegation/1",
        "expires after its parent",
    ),
    (
        "revoked delegation",
        lambda: _with_facts(build(), revoked=2, replayed=False),
        Rule.REVOCATION,
        "/delegation/2",
        "was revoked before T",
    ),
    (
        "unknown root",
        lambda: (build(), Facts({}, frozenset(), False), NOW),
        Rule.ROOT,
        "/delegation/0",
        "is not an enrolled principal",
    ),
    (
        "replayed invocation",
        lambda: _with_facts(build(), revoked=None, replayed=True),
        Rule.REPLAY,
        "/invocation",
        "an earlier record carries this invocation",
    ),
    (
        "proofs out of order",
        lambda: (_reordered(build()), None, NOW),
        Rule.PROOFS,
        "/delegation/0",
        "prf[0] does not name",
    ),
    (
        "a root that is not its own subject",
        lambda: (build(edit=_root(subject=STRANGER)), None, NOW),
        Rule.ROOT,
        "/delegation/0",
        "is not its sub",
    ),
]


def _with_facts(chain: Chain, *, revoked: int | None, replayed: bool) -> tuple[Chain, Facts, int]:
    """The chain, with hop `revoked` revoked (or none) and the invocation replayed or not."""
    cids = frozenset() if revoked is None else {ucan.cid_of(chain.tokens[revoked])}
    return chain, chain.enrolled(revoked=cids, replayed=replayed), NOW


def _root(**changes: Any) -> Callable[[int, dict[str, Any]], None]:
    def edit(position: int, arguments: dict[str, Any]) -> None:
        if position == 0:
            arguments.update(changes)

    return edit


def _reordered(chain: Chain) -> Chain:
    invocation = ucan.invoke(
        chain.keys[-1],
        chain.root,
        "/loan/approve",
        {"amount": 1},
        list(reversed(chain.tokens)),
        expiration=None,
    )
    return Chain(chain.keys, chain.tokens, invocation)


@pytest.mark.parametrize(
    ("make", "rule", "pointer", "says"),
    [pytest.param(*case[1:], id=case[0]) for case in BREAKS],
)
def test_each_broken_rule_is_refused_and_named(
    make: Callable[[], tuple[Chain, Facts | None, int]], rule: Rule, pointer: str, says: str
) -> None:
    chain, facts, at = make()
    check = verify(chain, facts, at)
    failed, where, detail = broken(check)
    assert (failed, where) == (rule, pointer), detail
    assert says in detail
    assert check.outcome(rule).status == INVALID


def test_the_records_copy_of_a_token_must_agree_with_it() -> None:
    chain = build()
    chain.links[1].aud = STRANGER
    assert broken(verify(chain))[:2] == (Rule.SIGNATURE, "/delegation/1")


def test_rules_the_caller_cannot_know_are_reported_as_not_checked() -> None:
    chain = build()
    check = verify(chain, chain.enrolled())
    assert not check
    assert check.failure is None
    statuses = {outcome.rule: outcome.status for outcome in check.rules}
    assert statuses[Rule.REVOCATION] == statuses[Rule.REPLAY] == NOT_CHECKED
    assert {rule for rule, status in statuses.items() if status == VALID} == set(Rule) - {
        Rule.REVOCATION,
        Rule.REPLAY,
    }


def test_a_null_subject_is_refused() -> None:
    chain = build(2)
    # This profile never mints one, so the powerline hop is signed by hand.
    payload = {
        "iss": ucan.did_of(chain.keys[1]),
        "aud": ucan.did_of(chain.keys[2]),
        "sub": None,
        "cmd": "/loan/approve",
        "pol": [],
        "nonce": b"powerline-00",
        "exp": NOW,
    }
    signed = libipld.encode_dag_cbor(
        {"h": ucan.VARSIG_ED25519_DAG_CBOR, ucan.DELEGATION_TAG: payload}
    )
    powerline = b"\x82\x58\x40" + chain.keys[1].sign(signed) + signed
    tokens = [chain.tokens[0], powerline]
    invocation = ucan.invoke(
        chain.keys[2], chain.root, "/loan/approve", {"amount": 1}, tokens, expiration=NOW
    )
    rule, where, detail = broken(verify(Chain(chain.keys, tokens, invocation)))
    assert (rule, where) == (Rule.SUBJECT, "/delegation/1")
    assert "powerline" in detail


def test_garbage_tokens_fail_rule_one_and_leave_the_rest_unreached() -> None:
    chain = build(2)
    chain.links[0].token = b"not a token"
    check = verify(chain)
    assert broken(check)[:2] == (Rule.SIGNATURE, "/delegation/0")
    garbage = verify_chain(b"\x00", chain.links, NOW * 1_000_000, chain.enrolled())
    assert broken(garbage)[0] == Rule.SIGNATURE


def test_a_chain_without_delegations_has_no_root() -> None:
    invoker = key("alone")
    invocation = ucan.invoke(invoker, ucan.did_of(invoker), "/x", {}, [], expiration=None)
    rule, where, _ = broken(verify_chain(invocation, [], NOW * 1_000_000, Facts({})))
    assert (rule, where) == (Rule.ROOT, "/invocation")


def test_an_overlong_chain_is_refused_before_it_is_read() -> None:
    chain = build(1)
    links = chain.links * 17
    rule, where, detail = broken(verify_chain(chain.invocation, links, NOW * 1_000_000, Facts({})))
    assert (rule, where) == (Rule.SIGNATURE, "/invocation")
    assert "at most 16" in detail
