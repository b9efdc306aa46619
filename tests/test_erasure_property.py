"""Erasure against a brute-force oracle: random sequences of uploads, decisions, holds,
erasures (refused, queued or done) and clock advances, with a retention rule that may expire
content; after every step, exactly the blobs the oracle says must be readable are."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.blobs.digest import digest_of
from ledger.blobs.salted import salted
from ledger.errors import BlobErased, ErasureRefused, SubjectUnknown
from ledger.keys.signing import sign_decision
from ledger.ledger import Ledger
from ledger.log.entry import to_micros
from ledger.log.receipt import Receipt
from ledger.log.sequencer import now_micros
from service.cli.times import parse_time
from service.demo.scenarios import demo_records
from service.demo.traffic import demo_signing_key, prepare_demo
from tests.erasure_support import DAY_US

SUBJECTS = ("s0", "s1")
FLOOR, EXPIRY = 30, 60
_tenants = itertools.count()

Step = tuple[Any, ...]
_erase = st.tuples(st.just("erase"), st.sampled_from(SUBJECTS), st.booleans())
# Advances that cross the floors (30 and 183 days) and the expiry (60) in a few steps.
_advance = st.tuples(st.just("advance"), st.sampled_from((0, 20, 45, 70, 200)))
steps = st.one_of(
    st.tuples(st.just("upload"), st.sampled_from((*SUBJECTS, None))),
    st.tuples(st.just("decide"), st.sampled_from(SUBJECTS), st.booleans()),
    st.tuples(st.just("hold"), st.sampled_from(SUBJECTS)),
    st.tuples(st.just("release"), st.sampled_from(SUBJECTS)),
    _erase,
    _erase,
    _advance,
    _advance,
)


@dataclass
class Oracle:
    """What must be true, computed by brute force from what was done."""

    now: int
    expiry: bool
    owner: dict[str, str | None] = field(default_factory=dict)  # digest -> uploaded for
    created: dict[str, int] = field(default_factory=dict)
    uses: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # (subject, logged)
    logged: dict[str, int] = field(default_factory=dict)  # subject -> latest decision
    holds: dict[str, str] = field(default_factory=dict)  # subject -> hold id
    queued: list[str] = field(default_factory=list)  # subjects, in order
    erased: set[str] = field(default_factory=set)

    def known(self, subject: str) -> bool:
        return subject in self.logged or subject in self.owner.values()

    def allowed(self, subject: str) -> bool:
        floor = FLOOR if self.expiry else 183
        latest = self.logged.get(subject)
        return subject not in self.holds and (latest is None or latest + floor * DAY_US <= self.now)

    def digests_of(self, subject: str) -> set[str]:
        return {d for d, owner in self.owner.items() if owner == subject} | {
            d for d, uses in self.uses.items() if any(who == subject for who, _ in uses)
        }

    def held(self, digest: str) -> bool:
        return self.owner[digest] in self.holds or any(
            who in self.holds for who, _ in self.uses.get(digest, [])
        )

    def run_due(self) -> None:
        waiting = []
        for subject in self.queued:
            if self.allowed(subject):
                self.erased |= self.digests_of(subject)
            else:
                waiting.append(subject)
        self.queued = waiting
        if not self.expiry:
            return
        cutoff = self.now - EXPIRY * DAY_US
        for digest, created in self.created.items():
            used_since = any(at >= cutoff for _, at in self.uses.get(digest, []))
            if created < cutoff and not used_since and not self.held(digest):
                self.erased.add(digest)


class Run:
    def __init__(self, ledger: Ledger, expiry: bool) -> None:
        self.ledger = ledger
        self.tenant = f"p{next(_tenants)}"
        self.oracle = Oracle(now_micros(), expiry)
        self.shape = prepare_demo(ledger, self.tenant)
        self.seeds = itertools.count(1000 * int(self.tenant[1:]))
        if expiry:
            ledger.rules.set_retention(
                self.tenant, floor_days=FLOOR, expire_after_days=EXPIRY, set_by="t", now_us=1
            )

    def step(self, step: Step) -> None:
        oracle, ledger, tenant = self.oracle, self.ledger, self.tenant
        match step:
            case ("upload", owner):
                content = salted(b"value %d" % next(self.seeds))
                digest = digest_of(content)
                ledger.blobs.put_many(tenant, [(digest, content, owner)], now_us=oracle.now)
                oracle.owner[digest], oracle.created[digest] = owner, oracle.now
            case ("decide", subject, under_subject):
                self._decide(subject, subject if under_subject else None)
            case ("hold", subject) if subject not in oracle.holds:
                hold = ledger.rules.add_hold(
                    tenant, reason="r", placed_by="t", now_us=oracle.now, subject=subject
                )
                oracle.holds[subject] = hold.hold_id
            case ("release", subject) if subject in oracle.holds:
                ledger.rules.release_hold(
                    tenant, oracle.holds.pop(subject), released_by="t", now_us=oracle.now,
                    reason=None,
                )  # fmt: skip
            case ("erase", subject, queue):
                self._erase(subject, queue)
            case ("advance", days):
                oracle.now += days * DAY_US
                ledger.erasures.run_due(oracle.now)
                oracle.run_due()

    def _decide(self, subject: str, owner: str | None) -> None:
        [record] = demo_records(1, seed=next(self.seeds), tenant=self.tenant)
        decision = self.shape(msgspec.structs.replace(record.decision, subject=subject))
        items = [(digest, content, owner) for digest, content in record.blobs.items()]
        self.ledger.blobs.put_many(self.tenant, items, now_us=self.oracle.now)
        [receipt] = self.ledger.append(
            [sign_decision(decision, demo_signing_key(self.tenant, decision.service))]
        )
        assert isinstance(receipt, Receipt), receipt
        logged = to_micros(parse_time(receipt.integrated_at))
        self.oracle.logged[subject] = logged
        for digest in record.blobs:
            self.oracle.owner[digest], self.oracle.created[digest] = owner, self.oracle.now
            self.oracle.uses.setdefault(digest, []).append((subject, logged))

    def _erase(self, subject: str, queue: bool) -> None:
        oracle = self.oracle
        ask = {"reason": "r", "requested_by": "t", "now_us": oracle.now, "queue": queue}
        if not oracle.known(subject):
            try:
                self.ledger.erasures.erase_subject(self.tenant, subject, **ask)
            except SubjectUnknown:
                return
            raise AssertionError(f"{subject} is unknown, yet its erasure was not refused")
        if oracle.allowed(subject):
            view = self.ledger.erasures.erase_subject(self.tenant, subject, **ask)
            assert view.state == "done"
            oracle.erased |= oracle.digests_of(subject)
        elif queue:
            view = self.ledger.erasures.erase_subject(self.tenant, subject, **ask)
            assert view.state == "queued"
            oracle.queued.append(subject)
        else:
            try:
                self.ledger.erasures.erase_subject(self.tenant, subject, **ask)
            except ErasureRefused:
                return
            raise AssertionError(f"the erasure of {subject} was not refused")

    def check(self) -> None:
        for digest in self.oracle.owner:
            try:
                self.ledger.blobs.get(self.tenant, digest)
                readable = True
            except BlobErased:
                readable = False
            assert readable == (digest not in self.oracle.erased), (digest, self.oracle)


@pytest.mark.slow
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.booleans(), st.lists(steps, min_size=4, max_size=16))
def test_exactly_the_blobs_the_oracle_keeps_are_readable(
    ledger: Ledger, expiry: bool, plan: list[Step]
) -> None:
    run = Run(ledger, expiry)
    for step in plan:
        run.step(step)
        run.check()
