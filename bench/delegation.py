"""Delegation chain verification: the time to check a 3-hop chain and its invocation against
all ten rules, beside a baseline from the same run: the bare Ed25519 verifies of the same
four tokens (three delegations and the invocation), which any verifier must do. Target: at
most 1 ms per chain.

"Cold" forgets every cache before each check, so it decodes, verifies and parses all four
tokens; "warm" is the ingest path once a service's chain has been seen (its delegations are
checked once per process and only the invocation is new).

With `--append N`, it also appends N demo decisions to a fresh SQLite ledger in batches of
1,000, with their invocations (every chain verified at ingest) and without (the chain kept
unchecked), to show what verification costs a whole append.

    python -m bench.delegation [--chains 2000] [--append 20000]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import DEMO_TENANT, fresh_ledger, rate, timed
from ledger.delegation import ucan
from ledger.delegation.chain import Facts, Principal, clear_caches, links_for, verify_chain
from ledger.keys import ed25519 as _ed25519
from ledger.log.receipt import Receipt
from ledger.records.decision import DelegationLink
from service.demo.traffic import demo_envelopes, prepare_demo

HOPS = 3


def _key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


def chain(number: int) -> tuple[bytes, list[bytes]]:
    """A distinct 3-hop chain (human -> platform -> team -> service) and its invocation,
    with a policy on every hop, valid for the next hour."""
    keys = [_key(f"bench/{number}/{hop}") for hop in range(HOPS + 1)]
    human = ucan.did_of(keys[0])
    expires = int(time.time()) + 3600
    commands = ["/loan", "/loan/approve", "/loan/approve"]
    policies: list[list[Any]] = [
        [["like", ".region", "eu-*"]],
        [["<=", ".amount", 50_000], ["any", ".flags", ["==", ".", "reviewed"]]],
        [["and", [[">", ".amount", 0], ["not", ["==", ".currency", "XXX"]]]]],
    ]
    tokens = [
        ucan.delegate(
            keys[hop],
            ucan.did_of(keys[hop + 1]),
            human,
            commands[hop],
            policies[hop],
            expires,
            not_before=expires - 7200,
        )
        for hop in range(HOPS)
    ]
    args = {"amount": 12_000, "currency": "EUR", "region": "eu-west", "flags": ["reviewed"]}
    invocation = ucan.invoke(keys[HOPS], human, "/loan/approve", args, tokens, expiration=expires)
    return invocation, tokens


def _median_us(
    runs: Sequence[Callable[[], object]], before: Callable[[Callable[[], object]], object]
) -> float:
    """The median time of the runs, each after `before(run)`."""
    samples = []
    for run in runs:
        before(run)
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chains", type=int, default=2_000)
    parser.add_argument("--append", type=int, default=0, help="demo decisions to append")
    arguments = parser.parse_args()
    chains = [chain(number) for number in range(arguments.chains)]
    checks: list[Callable[[], object]] = []
    baselines: list[Callable[[], object]] = []
    for invocation, tokens in chains:
        links = links_for(tokens)
        root = links[0].iss
        facts = Facts({root: Principal(root, "bench", None, "human")}, frozenset(), False)
        checks.append(functools.partial(_check, invocation, links, facts))
        signed: list[ucan.Delegation | ucan.Invocation] = [
            ucan.decode_delegation(token) for token in tokens
        ]
        signed.append(ucan.decode_invocation(invocation))
        keys = [ucan.public_key_from_did(token.iss) for token in signed]
        baselines.append(functools.partial(_bare_verifies, signed, keys))
    cold = _median_us(checks, lambda _: clear_caches())
    warm = _median_us(checks, lambda run: run())  # the run before primes the caches
    baseline = _median_us(baselines, lambda _: None)
    print(f"{arguments.chains:,} distinct {HOPS}-hop chains, median per chain")
    print(f"  verify_chain, cold (decode, 4 signatures, policies)  {cold:8.1f} µs")
    print(f"  verify_chain, warm (delegations seen before)         {warm:8.1f} µs")
    print(f"  baseline: 4 bare Ed25519 verifies of the same tokens  {baseline:8.1f} µs")
    print(f"  cold / baseline = {cold / baseline:.2f}")
    print(f"  target 1 ms per chain: {'met' if cold <= 1000 else 'NOT met'}")
    if arguments.append:
        print(f"\nappend of {arguments.append:,} demo decisions, SQLite, batches of 1,000")
        for label, authorized in (("with invocations", True), ("chains unchecked", False)):
            print(f"  {label:<18} {rate(arguments.append, _append(arguments.append, authorized))}")


def _append(count: int, authorized: bool) -> float:
    with fresh_ledger("sqlite") as ledger:
        shape = prepare_demo(ledger, DEMO_TENANT)
        records = list(
            demo_envelopes(count, seed=1, tenant=DEMO_TENANT, shape=shape if authorized else None)
        )

        def run() -> None:
            for start in range(0, count, 1_000):
                results = ledger.append(records[start : start + 1_000])
                if not all(isinstance(result, Receipt) for result in results):
                    raise SystemExit("a demo record was refused")

        return timed(run)


def _check(invocation: bytes, links: list[DelegationLink], facts: Facts) -> None:
    check = verify_chain(invocation, links, time.time_ns() // 1000, facts)
    if not check:
        raise SystemExit(f"a benchmark chain does not verify: {check.failure}")


def _bare_verifies(tokens: list[ucan.Delegation | ucan.Invocation], keys: list[bytes]) -> None:
    for token, key in zip(tokens, keys, strict=True):
        _ed25519.verify(key, token.signed, token.signature)


if __name__ == "__main__":
    main()
