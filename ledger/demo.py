"""Realistic, deterministic demo decisions for tests, benchmarks and walkthroughs.

Three scenarios, cycled by index: an order-routing agent that retrieves carrier SLAs and
calls tools, a loan underwriter checked by a Rego policy and sometimes a human, and a
payment-retry advisor whose tool call times out. Every value comes from the `random.Random`
handed in, so a seed always yields the same records; together the scenarios set every
optional member of the schema. Timings add up (steps follow one another from
`occurred_at`; `usage.latency_ms` spans them) and costs follow the models' list prices.

Each record carries a real two-link UCAN delegation chain: a human delegates to the
tenant's agent platform, which delegates to the service. Keys are derived from the tenant
and the principal's name, so one service keeps one chain, re-issued every 90 days, as it
would in production. The chains stay in force until 2036, so that records dated in 2025
still verify when they are appended and audited today.

`authorize` adds the invocation the chain proves, signed by the service: with it, a record
verifies against the ten rules of docs/delegation.md once the humans at the roots
(`demo_principals`) are enrolled in its tenant. Without it, as `demo_decisions` makes them,
a record carries its chain as a claim that ingest does not check (and needs no enrollment).
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import ucan
from ledger.delegation import command_for, links_for
from ledger.delegation_records import PRINCIPAL_SERVICE, PrincipalRecord
from ledger.record import (
    ContextSnapshot,
    Cost,
    Decision,
    DelegationLink,
    Dependency,
    Exposure,
    Freshness,
    HumanApproval,
    Links,
    LlmCall,
    Message,
    Model,
    Output,
    PolicyCheck,
    PolicyEvaluation,
    Prompt,
    Retrieval,
    RetrievedDocument,
    Step,
    StepError,
    ToolCall,
    ToolDefinition,
    Usage,
)

SCENARIOS: tuple[str, ...] = ("order.route", "loan.approve", "payment.retry")
DEMO_SERVICES: Mapping[str, str] = {
    "order.route": "order-router",
    "loan.approve": "loan-underwriter",
    "payment.retry": "payment-retrier",
}
# The human at the root of each scenario's delegation chain: a handle and a display name.
_OWNERS = {
    "order.route": ("maria.chen", "Maria Chen"),
    "loan.approve": ("priya.natarajan", "Priya Natarajan"),
    "payment.retry": ("tomas.ferreira", "Tomás Ferreira"),
}
# The argument each service's delegation caps (UCAN policy: selector <= limit).
_LIMITS = {
    "order.route": (".order.value_usd", 5000),
    "loan.approve": (".amount", 50000),
    "payment.retry": (".attempt", 4),
}
_START = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
_WINDOW = timedelta(days=90)  # delegations are re-issued per window
_CHAINS_EXPIRE = int(datetime(2036, 1, 1, tzinfo=UTC).timestamp())

# USD per million tokens: input, cached input, output (reasoning is billed as output).
_PRICES = {
    "gpt-4.1-mini": (Decimal("0.40"), Decimal("0.10"), Decimal("1.60")),
    "claude-sonnet-4": (Decimal("3.00"), Decimal("0.30"), Decimal("15.00")),
    "o4-mini": (Decimal("1.10"), Decimal("0.275"), Decimal("4.40")),
}
_MICRODOLLAR = Decimal("0.000001")


def demo_decision(
    rng: random.Random, index: int, *, tenant: str = "acme", occurred_at: datetime | None = None
) -> Decision:
    """The demo decision at `index`: scenarios cycle by index, ids are unique per index."""
    scenario = SCENARIOS[index % len(SCENARIOS)]
    at = occurred_at or _START + timedelta(seconds=37 * index)
    return _BUILDERS[scenario](_Run(rng, index, tenant, scenario, at))


def demo_decisions(
    count: int, *, seed: int = 0, tenant: str = "acme", start: datetime | None = None
) -> Iterator[Decision]:
    """`count` demo decisions, a few seconds apart from `start`, the same for the same seed."""
    rng = random.Random(seed)  # noqa: S311 -- demo data, not secrets
    at = start or _START
    for index in range(count):
        at += timedelta(milliseconds=rng.randint(200, 9000))
        yield demo_decision(rng, index, tenant=tenant, occurred_at=at)


class _Run:
    """What one record's builder needs: randomness, identity and a clock for its steps."""

    def __init__(
        self, rng: random.Random, index: int, tenant: str, scenario: str, at: datetime
    ) -> None:
        self.rng = rng
        self.index = index
        self.tenant = tenant
        self.scenario = scenario
        self.at = at
        self.id = f"{scenario.partition('.')[0]}-{rng.getrandbits(48):012x}-{index:06d}"
        self.now = at + timedelta(milliseconds=rng.randint(2, 9))

    def span(self, low_ms: int, high_ms: int) -> tuple[datetime, datetime]:
        """The start and end of the next step, which lasts low_ms to high_ms."""
        started = self.now
        ended = started + timedelta(milliseconds=self.rng.randint(low_ms, high_ms))
        self.now = ended + timedelta(milliseconds=self.rng.randint(1, 4))
        return started, ended

    def hex(self, bits: int) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    def links(self, **more: str) -> Links:
        return Links(trace_id=self.hex(128), span_id=self.hex(64), **more)

    def delegation(self) -> list[DelegationLink]:
        return links_for(_chain(self.tenant, self.scenario, (self.at - _START) // _WINDOW))

    def total(self, steps: list[Step]) -> Usage:
        """The decision's usage: the sum over its steps, and the latency of the whole run."""
        usages = [step.usage for step in steps if step.usage is not None]
        cached = sum(u.cache_read_input_tokens or 0 for u in usages)
        reasoning = sum(u.reasoning_output_tokens or 0 for u in usages)
        return Usage(
            input_tokens=sum(u.input_tokens for u in usages),
            output_tokens=sum(u.output_tokens for u in usages),
            cache_read_input_tokens=cached or None,
            reasoning_output_tokens=reasoning or None,
            cost=Cost(
                amount=sum((u.cost.amount for u in usages if u.cost), Decimal(0)), currency="USD"
            ),
            latency_ms=round((steps[-1].ended_at - self.at) / timedelta(milliseconds=1)),
        )


def _digest(content: Any) -> str:
    """The sha256 digest of `content`: bytes as they are, anything else as its JSON."""
    data = content if isinstance(content, bytes) else msgspec.json.encode(content)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _usage(
    model: str,
    input_tokens: int,
    output_tokens: int,
    *,
    cached: int | None = None,
    reasoning: int | None = None,
) -> Usage:
    price_in, price_cached, price_out = _PRICES[model]
    cost = (
        (input_tokens - (cached or 0)) * price_in
        + (cached or 0) * price_cached
        + output_tokens * price_out
    ) / 1_000_000
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_input_tokens=cached,
        reasoning_output_tokens=reasoning,
        cost=Cost(amount=cost.quantize(_MICRODOLLAR), currency="USD"),
    )


def _key(tenant: str, principal: str) -> Ed25519PrivateKey:
    seed = hashlib.sha256(f"prov-demo/{tenant}/{principal}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def demo_principals(tenant: str) -> list[PrincipalRecord]:
    """The enrollment records of the humans at the roots of `tenant`'s demo chains, for the
    tenant's principal service to sign; the same every time, so enrolling again is a retry."""
    return [
        PrincipalRecord(
            id=f"principal-{handle}",
            tenant=tenant,
            service=PRINCIPAL_SERVICE,
            occurred_at=_START - _WINDOW,
            did=ucan.did_of(_key(tenant, display)),
            name=f"{handle}@{tenant}.example",
            display_name=display,
            kind="human",
        )
        for handle, display in _OWNERS.values()
    ]


@functools.cache
def _chain(tenant: str, scenario: str, window: int) -> tuple[bytes, bytes]:
    """The chain human -> agent platform -> service for one 90-day window.

    The root grants the scenario's whole domain (``/loan``); the second link narrows it to
    the command (``/loan/approve``) under a limit on its arguments.
    """
    handle, display = _OWNERS[scenario]
    human, platform = _key(tenant, display), _key(tenant, "agent-platform")
    service = _key(tenant, DEMO_SERVICES[scenario])
    domain, action = scenario.split(".")
    not_before = int((_START + window * _WINDOW).timestamp())
    root = ucan.delegate(
        human,
        ucan.did_of(platform),
        ucan.did_of(human),
        f"/{domain}",
        [],
        _CHAINS_EXPIRE,
        ucan.derived_nonce(f"{tenant}/{handle}/{window}".encode()),
        not_before,
        meta={"name": display},
    )
    leaf = ucan.delegate(
        platform,
        ucan.did_of(service),
        ucan.did_of(human),
        f"/{domain}/{action}",
        [["<=", *_LIMITS[scenario]]],
        _CHAINS_EXPIRE,
        ucan.derived_nonce(f"{tenant}/{scenario}/{window}".encode()),
        not_before,
    )
    return root, leaf


# A unit price per SKU, so that an order's invocation can state what the order is worth.
_UNIT_USD = {"WID-220": 120, "GAD-118": 340, "BRK-540": 65, "HNG-031": 18}


def authorize(decision: Decision) -> Decision:
    """The demo decision with the invocation its chain proves: its service invokes the
    decision's command on the human's behalf, with the arguments the chain's policy caps."""
    inputs = decision.inputs
    args: dict[str, Any] = {"decision": decision.id}
    match decision.decision_type:
        case "order.route":
            value = inputs["qty"] * _UNIT_USD[inputs["sku"]]
            args["order"] = {"id": inputs["order_id"], "value_usd": value}
        case "loan.approve":
            args["amount"] = int(Decimal(inputs["amount"]))
        case _:
            args["attempt"] = inputs["attempt"]
    [root, *_] = chain = [link.token for link in decision.delegation]
    human = ucan.decode_delegation(root).iss
    invocation = ucan.invoke(
        _key(decision.tenant, decision.service),
        human,
        command_for(decision.decision_type),
        args,
        chain,
        expiration=_CHAINS_EXPIRE,
        nonce=ucan.derived_nonce(f"{decision.tenant}/{decision.id}".encode()),
        issued_at=int(decision.occurred_at.timestamp()),
    )
    return msgspec.structs.replace(decision, invocation=invocation)


# --- order.route ---------------------------------------------------------------------------

_WAREHOUSES = ("RNO-1", "SEA-1", "OAK-2")


def _order_route(run: _Run) -> Decision:
    rng = run.rng
    sku = rng.choice(["WID-220", "GAD-118", "BRK-540", "HNG-031"])
    qty = rng.randint(1, 6)
    postcode = rng.choice(["94107", "10013", "60614", "98109", "30309"])
    stock = {warehouse: rng.randint(0, 40) for warehouse in _WAREHOUSES}
    stock["RNO-1"] = max(stock["RNO-1"], qty)
    origin = next(warehouse for warehouse in _WAREHOUSES if stock[warehouse] >= qty)
    weight = round(0.8 * qty, 1)
    quotes: list[dict[str, Any]] = [
        {"carrier": "UPS", "usd": f"{7.9 + 1.2 * weight:.2f}", "days": 2},
        {"carrier": "FedEx", "usd": f"{12.5 + 1.6 * weight:.2f}", "days": 1},
    ]
    chosen = quotes[rng.random() < 0.3]  # a tight promise date sometimes needs the faster one
    decision = {"warehouse": origin, "carrier": chosen["carrier"], "days": chosen["days"]}
    cutoffs = {"UPS": "17:00", "FedEx": "18:30"}
    sla = RetrievedDocument(
        source="kb.carrier-sla",
        doc_id=f"sla/{chosen['carrier'].lower()}",
        version="2025-04",
        score=round(rng.uniform(0.72, 0.93), 3),
        digest=_digest(f"sla/{chosen['carrier']}".encode()),
    )
    started, ended = run.span(20, 60)
    retrieval = Retrieval(
        started_at=started,
        ended_at=ended,
        source=sla.source,
        inputs={"query": f"{chosen['carrier']} cutoff {postcode}"},
        outputs=[sla.doc_id],
    )
    started, ended = run.span(600, 1400)
    plan = LlmCall(
        started_at=started,
        ended_at=ended,
        outputs={"tool_calls": ["check_inventory", "quote_carriers"]},
        usage=_usage("gpt-4.1-mini", rng.randint(900, 1300), rng.randint(40, 70)),
        response_id=f"chatcmpl-{run.hex(64)}",
        finish_reason="tool_calls",
    )
    started, ended = run.span(30, 120)
    inventory = ToolCall(
        started_at=started,
        ended_at=ended,
        name="check_inventory",
        call_id=f"call_{run.hex(48)}",
        arguments={"sku": sku},
        result=stock,
    )
    started, ended = run.span(150, 600)
    quote = ToolCall(
        started_at=started,
        ended_at=ended,
        name="quote_carriers",
        call_id=f"call_{run.hex(48)}",
        arguments={"from": origin, "to": postcode, "kg": weight},
        result=quotes,
    )
    started, ended = run.span(500, 1100)
    final = LlmCall(
        started_at=started,
        ended_at=ended,
        usage=_usage("gpt-4.1-mini", rng.randint(1400, 1800), rng.randint(30, 50), cached=1024),
        response_id=f"chatcmpl-{run.hex(64)}",
        finish_reason="stop",
    )
    steps: list[Step] = [retrieval, plan, inventory, quote, final]
    cutoffs_version = run.at.date().isoformat()
    # Every ninth order decision is a shadow re-run of an earlier one.
    links = (
        run.links(replay_of=f"order-{run.hex(48)}-{run.index - 3:06d}")
        if run.index % 9 == 6
        else run.links()
    )
    return Decision(
        id=run.id,
        tenant=run.tenant,
        service=DEMO_SERVICES[run.scenario],
        decision_type=run.scenario,
        occurred_at=run.at,
        subject=f"cust_{rng.randint(10000, 99999)}",
        inputs={
            "order_id": f"SO-{rng.randint(100000, 999999)}",
            "sku": sku,
            "qty": qty,
            "postcode": postcode,
        },
        context=[
            ContextSnapshot(
                name="carrier.cutoffs",
                version=cutoffs_version,
                digest=_digest(cutoffs),
                fetched_at=run.at - timedelta(minutes=rng.randint(1, 50)),
                valid_until=run.at.replace(hour=17, minute=0, second=0, microsecond=0),
                value=cutoffs,
            )
        ],
        retrieval=[sla],
        prompt=Prompt(
            template_id="order-routing",
            version="3.2.0",
            digest=_digest(b"order-routing@3.2.0"),
            variables={"warehouses": len(_WAREHOUSES)},
            messages_blob=_digest(f"{run.id}/messages".encode()),
        ),
        model=Model(
            provider="openai",
            name="gpt-4.1-mini",
            version="gpt-4.1-mini-2025-04-14",
            fingerprint="fp_6f2eabb9a5",
            temperature=0.0,
            seed=7,
            max_tokens=400,
            tools=[
                ToolDefinition(name="check_inventory", description="Units on hand per warehouse"),
                ToolDefinition(name="quote_carriers", description="Carrier quotes for a parcel"),
            ],
        ),
        steps=steps,
        output=Output(
            decision=decision,
            text=msgspec.json.encode(decision).decode(),
            finish_reason="stop",
        ),
        usage=run.total(steps),
        delegation=run.delegation(),
        freshness=Freshness(
            valid_until=run.at + timedelta(minutes=15),
            depends_on=[
                Dependency(key="carrier.cutoffs", version=cutoffs_version),
                Dependency(key=f"inventory/{sku}", version=str(rng.randint(10**5, 10**6))),
            ],
        ),
        links=links,
        attributes={"region": "us-west", "channel": rng.choice(["web", "app", "b2b"])},
    )


# --- loan.approve --------------------------------------------------------------------------


def _loan_approve(run: _Run) -> Decision:
    rng = run.rng
    amount = Decimal(rng.randrange(3000, 45000, 500))
    score = rng.randint(620, 810)
    dti = round(rng.uniform(0.12, 0.45), 2)
    reasons = [
        reason
        for reason, applies in (
            ("amount_above_auto_limit", amount > 20000),
            ("dti_above_0.35", dti > 0.35),
            ("score_below_660", score < 660),
        )
        if applies
    ]
    verdict = "refer" if reasons else "allow"
    approved = verdict == "allow" or rng.random() < 0.7
    apr = f"{7.9 + (800 - score) * 0.04 + dti * 6:.2f}"
    income = {"monthly_net": f"{rng.randrange(3200, 12000, 50)}.00", "verified": True}
    bureau_version = f"exp-{(run.at - timedelta(days=rng.randint(0, 6))).date().isoformat()}"
    bureau_fetched = run.at - timedelta(hours=rng.randint(1, 40))
    started, ended = run.span(2500, 5200)
    assess = LlmCall(
        started_at=started,
        ended_at=ended,
        inputs={"bureau": bureau_version},
        outputs={"risk": "moderate" if reasons else "low"},
        usage=_usage(
            "claude-sonnet-4", rng.randint(2600, 3400), rng.randint(180, 320), cached=2048
        ),
        response_id=f"msg_{run.hex(96)}",
        finish_reason="stop_sequence",
    )
    started, ended = run.span(3, 12)
    check = PolicyCheck(
        started_at=started,
        ended_at=ended,
        inputs={"amount": str(amount), "score": score, "dti": dti},
        outputs={"result": verdict},
    )
    steps: list[Step] = [assess, check]
    if reasons:
        started, ended = run.span(60_000, 900_000)
        steps.append(
            HumanApproval(
                started_at=started,
                ended_at=ended,
                approver=f"underwriter:{rng.choice(['j.alvarez', 'k.osei', 'm.ito'])}",
                outputs={"approved": approved},
            )
        )
    policy_version = "2025.05.3"
    return Decision(
        id=run.id,
        tenant=run.tenant,
        service=DEMO_SERVICES[run.scenario],
        decision_type=run.scenario,
        occurred_at=run.at,
        subject=f"applicant_{rng.randint(100000, 999999)}",
        inputs={
            "application_id": f"LA-{run.at.year}-{rng.randint(1000, 9999)}",
            "amount": str(amount),
            "term_months": rng.choice([24, 36, 48, 60]),
        },
        context=[
            ContextSnapshot(
                name="credit.bureau_report",
                version=bureau_version,
                digest=_digest(f"{run.id}/bureau".encode()),
                fetched_at=bureau_fetched,
                valid_until=bureau_fetched + timedelta(days=30),
                blob=_digest(f"{run.id}/bureau.json".encode()),
            ),
            ContextSnapshot(
                name="income.verification",
                version=str(rng.randint(1, 4)),
                digest=_digest(income),
                fetched_at=run.at - timedelta(days=rng.randint(1, 20)),
                value=income,
            ),
        ],
        prompt=Prompt(
            template_id="loan-assessment",
            version="1.8.0",
            digest=_digest(b"loan-assessment@1.8.0"),
            variables={"product": "personal"},
            messages_blob=_digest(f"{run.id}/messages".encode()),
        ),
        model=Model(
            provider="anthropic",
            name="claude-sonnet-4",
            version="claude-sonnet-4-20250514",
            temperature=0.2,
            top_p=0.9,
            top_k=40,
            max_tokens=1024,
            stop_sequences=["</assessment>"],
        ),
        steps=steps,
        output=Output(
            decision={"approved": approved, "apr": apr} if approved else {"approved": False},
            text=f"<assessment>Score {score}, DTI {dti}: {verdict}.",
            finish_reason="stop_sequence",
        ),
        usage=run.total(steps),
        policy=PolicyEvaluation(
            engine="opa",
            policy_id="lending/personal_loan",
            version=policy_version,
            digest=_digest(f"lending/personal_loan@{policy_version}".encode()),
            result=verdict,
            reasons=reasons,
        ),
        delegation=run.delegation(),
        freshness=Freshness(
            valid_until=bureau_fetched + timedelta(days=30),
            depends_on=[Dependency(key="credit.bureau_report", version=bureau_version)],
        ),
        exposures=[
            Exposure(group=f"lending/personal/{score // 20 * 20}", amount=amount, unit="USD")
        ]
        if approved
        else [],
        links=run.links(),
    )


# --- payment.retry -------------------------------------------------------------------------


def _payment_retry(run: _Run) -> Decision:
    rng = run.rng
    amount = Decimal(rng.randrange(999, 25000)) / 100
    currency = rng.choice(["EUR", "USD", "GBP"])
    decline = rng.choice(["insufficient_funds", "do_not_honor", "issuer_unavailable"])
    attempt = rng.randint(1, 3)
    card_bin = str(rng.randint(400000, 559999))
    wait_h = {"insufficient_funds": 24, "do_not_honor": 72, "issuer_unavailable": 1}[decline]
    retry = attempt < 3 and decline != "do_not_honor"
    config = {"max_attempts": 4, "window_h": 96}
    started, ended = run.span(900, 2400)
    plan = LlmCall(
        started_at=started,
        ended_at=ended,
        usage=_usage(
            "o4-mini",
            rng.randint(500, 700),
            rng.randint(300, 600),
            reasoning=rng.choice([128, 256]),
        ),
        finish_reason="tool_calls",
    )
    started, ended = run.span(2000, 2010)
    status = ToolCall(
        started_at=started,
        ended_at=ended,
        name="issuer_status",
        call_id=f"call_{run.hex(48)}",
        arguments={"bin": card_bin},
        error=StepError(type="timeout", message="issuer status API did not answer in 2000 ms"),
    )
    started, ended = run.span(700, 1800)
    final = LlmCall(
        started_at=started,
        ended_at=ended,
        usage=_usage(
            "o4-mini", rng.randint(700, 900), rng.randint(200, 500), reasoning=rng.choice([64, 192])
        ),
        finish_reason="stop",
    )
    steps: list[Step] = [plan, status, final]
    retry_at = (run.at + timedelta(hours=wait_h)).replace(microsecond=0)
    decision = {"retry": retry, "at": retry_at.isoformat()} if retry else {"retry": False}
    return Decision(
        id=run.id,
        tenant=run.tenant,
        service=DEMO_SERVICES[run.scenario],
        decision_type=run.scenario,
        occurred_at=run.at,
        subject=f"cust_{rng.randint(10000, 99999)}",
        inputs={
            "payment_id": f"pay_{run.hex(64)}",
            "amount": str(amount),
            "currency": currency,
            "decline_code": decline,
            "attempt": attempt,
        },
        context=[
            ContextSnapshot(
                name="merchant.retry_config",
                version="12",
                digest=_digest(config),
                fetched_at=run.at - timedelta(seconds=rng.randint(5, 300)),
                value=config,
            )
        ],
        prompt=Prompt(
            template_id="retry-advisor",
            version="0.9.1",
            digest=_digest(b"retry-advisor@0.9.1"),
            messages=[
                Message(role="system", content="Advise whether to retry a declined card payment."),
                Message(role="user", content=f"{decline}, attempt {attempt}, BIN {card_bin}"),
            ],
        ),
        model=Model(
            provider="openai",
            name="o4-mini",
            version="o4-mini-2025-04-16",
            seed=rng.randint(1, 2**31),
            max_tokens=1200,
            tools=[
                ToolDefinition(
                    name="issuer_status",
                    parameters={"type": "object", "properties": {"bin": {"type": "string"}}},
                )
            ],
        ),
        steps=steps,
        output=Output(
            decision=decision,
            text=f"Retry after {wait_h} h." if retry else "Do not retry.",
        ),
        usage=run.total(steps),
        delegation=run.delegation(),
        exposures=[Exposure(group=f"issuer/{card_bin}", amount=amount, unit=currency)],
        # The decision that sent the payment the first time.
        links=run.links(parent_decision=f"payment-{run.hex(48)}-{run.index:06d}"),
    )


_BUILDERS = {
    "order.route": _order_route,
    "loan.approve": _loan_approve,
    "payment.retry": _payment_retry,
}


def content_by_reference(decision: Decision) -> Decision:
    """The same decision as a service that keeps bulky content out of its records would
    send it: context values and prompt messages as blob digests, and no delegation chain.

    Benchmarks use it for records of about 2 KB; the demo itself keeps everything inline.
    """
    return msgspec.structs.replace(
        decision,
        context=[
            msgspec.structs.replace(snapshot, value=msgspec.UNSET, blob=_digest(snapshot.value))
            if snapshot.blob is None
            else snapshot
            for snapshot in decision.context
        ],
        prompt=None
        if decision.prompt is None
        else msgspec.structs.replace(
            decision.prompt,
            messages=None,
            messages_blob=decision.prompt.messages_blob or _digest(decision.prompt.messages),
        ),
        delegation=[],
        invocation=None,
    )
