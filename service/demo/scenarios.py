"""Realistic, deterministic demo decisions for tests, benchmarks and walkthroughs.

Three scenarios, cycled by index: an order-routing agent that retrieves carrier SLAs and
calls tools, a loan underwriter checked by a Cedar policy and sometimes a human, and a
payment-retry advisor whose issuer lookup sometimes times out. Every value comes from the
`random.Random` handed in, so a seed always yields the same records; together the
scenarios set every optional member of the schema. Timings add up (steps follow one
another from `occurred_at`; `usage.latency_ms` spans them) and costs follow the models'
list prices.

Every record is a run that replay can reproduce. Its prompt's messages carry the facts
the model read (as ``Label: {json}`` lines, `read_facts`); each LLM step records what the
model said (``outputs.text``; the last one's is ``output.text``); the tool calls an LLM
call asked for are the tool-call steps after it; and the decision is a function of what
the model saw, by the rules below (`route_order`, `assess_loan`, `advise_retry`), stated
as JSON in the final text. `service.demo.models` answers with the same rules, so a pinned
replay of a demo record reproduces it. The blobs a record references (rendered messages,
the bureau report) are real bytes: `demo_records` hands them over with each decision.

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
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.blobs.digest import digest_of
from ledger.blobs.salted import salted
from ledger.delegation import ucan
from ledger.delegation.chain import command_for, links_for
from ledger.delegation.records import PRINCIPAL_SERVICE, PrincipalRecord
from ledger.records.decision import (
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
from service.demo.loan_policy import (
    LOAN_POLICY_ID,
    LOAN_POLICY_V1,
    assess_policy_v1,
    loan_policy_inputs,
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


@dataclass(frozen=True, slots=True)
class DemoRecord:
    """A demo decision and the bytes of every blob it references, by digest."""

    decision: Decision
    blobs: Mapping[str, bytes]


def demo_record(
    rng: random.Random, index: int, *, tenant: str = "acme", occurred_at: datetime | None = None
) -> DemoRecord:
    """The demo record at `index`: scenarios cycle by index, ids are unique per index."""
    scenario = SCENARIOS[index % len(SCENARIOS)]
    at = occurred_at or _START + timedelta(seconds=37 * index)
    run = _Run(rng, index, tenant, scenario, at)
    decision = _BUILDERS[scenario](run)
    return DemoRecord(decision, run.blobs)


def demo_decision(
    rng: random.Random, index: int, *, tenant: str = "acme", occurred_at: datetime | None = None
) -> Decision:
    """The decision of `demo_record`, without its blobs."""
    return demo_record(rng, index, tenant=tenant, occurred_at=occurred_at).decision


def demo_records(
    count: int, *, seed: int = 0, tenant: str = "acme", start: datetime | None = None
) -> Iterator[DemoRecord]:
    """`count` demo records, a few seconds apart from `start`, the same for the same seed."""
    rng = random.Random(seed)  # noqa: S311 -- demo data, not secrets
    at = start or _START
    for index in range(count):
        at += timedelta(milliseconds=rng.randint(200, 9000))
        yield demo_record(rng, index, tenant=tenant, occurred_at=at)


def demo_decisions(
    count: int, *, seed: int = 0, tenant: str = "acme", start: datetime | None = None
) -> Iterator[Decision]:
    """The decisions of `demo_records`."""
    for record in demo_records(count, seed=seed, tenant=tenant, start=start):
        yield record.decision


class _Run:
    """What one record's builder needs: randomness, identity, a clock for its steps and
    a place for the blobs it references."""

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
        self.blobs: dict[str, bytes] = {}

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

    def blob(self, content: bytes) -> str:
        """Keep `content` as a salted blob of this record (a hiding commitment: personal
        content); its digest is the reference. The demo derives the salt from the record's
        id, so that a re-run of a seed is an idempotent retry; a real producer draws a
        fresh random salt (`ledger.blobs.salted.salted`, as the SDK does)."""
        salt = hashlib.sha256(f"prov demo salt\n{self.id}\n{len(self.blobs)}".encode()).digest()
        blob = salted(content, salt)
        digest = digest_of(blob)
        self.blobs[digest] = blob
        return digest

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


# --- what the demo's models read, and how they decide --------------------------------------
# Shared with `service.demo.models`, whose models answer by these rules: the builders below
# use them too, so that every record is a run those models reproduce.

FACT_ORDER = "Order"
FACT_APPLICATION = "Application"
FACT_BUREAU = "Credit bureau report"
FACT_INCOME = "Verified income"
FACT_PAYMENT = "Payment"
FACT_RETRY_POLICY = "Retry policy"
_FACT = re.compile(r"^([A-Z][A-Za-z ]*): ([\[{].*)$", re.MULTILINE)


def json_text(value: Any) -> str:
    """Compact JSON: how the demo writes facts into prompts, its tools return results and
    its models state decisions."""
    return msgspec.json.encode(value).decode()


def read_facts(text: str) -> dict[str, Any]:
    """The ``Label: {json}`` lines of a rendered message, by label; other lines are prose."""
    facts: dict[str, Any] = {}
    for label, raw in _FACT.findall(text):
        try:
            facts[label] = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            continue
    return facts


def count_tokens(text: str) -> int:
    """The demo's stand-in for a tokenizer: a token per four characters."""
    return -(-len(text) // 4)


class _Dialogue:
    """What the model has read so far, to count each call's tokens as the model server
    (`service.demo.model_server`) counts them: every message's content in; the text, and each tool
    call's name and JSON arguments, out."""

    def __init__(self, messages: list[Message]) -> None:
        self.read = [message.content for message in messages]

    def said(self, text: str, *calls: tuple[str, dict[str, Any]]) -> tuple[int, int]:
        """The tokens in and out of the call that said `text` and asked for `calls`; its
        turn is then part of what the next call reads."""
        spoken = [text, *(name + json_text(arguments) for name, arguments in calls)]
        counted = sum(map(count_tokens, self.read)), sum(map(count_tokens, spoken))
        self.read.append(text)
        return counted

    def answered(self, result: Any) -> None:
        """A tool's result (or its error), as the next call reads it."""
        self.read.append(json_text(result))


@dataclass(frozen=True, slots=True)
class _Template:
    """A prompt template: a system prompt, and a request line followed by fact lines."""

    template_id: str
    version: str
    system: str
    request: str  # formatted with the decision's inputs

    def render(self, inputs: Mapping[str, Any], facts: Mapping[str, Any]) -> list[Message]:
        lines = [self.request.format_map(inputs)]
        lines += [f"{label}: {json_text(value)}" for label, value in facts.items()]
        return [
            Message(role="system", content=self.system),
            Message(role="user", content="\n".join(lines)),
        ]

    def prompt(self, **rendered: Any) -> Prompt:
        """The record's prompt, with `rendered` as its `messages` or `messages_blob`."""
        source = f"{self.system}\n\n{self.request}".encode()
        return Prompt(
            template_id=self.template_id, version=self.version, digest=_digest(source), **rendered
        )


# order.route: the first warehouse with every unit on hand, then the cheapest carrier that
# keeps the delivery promise.

WAREHOUSES = ("RNO-1", "SEA-1", "OAK-2")  # in order of preference
_ORDER_TEMPLATE = _Template(
    "order-routing",
    "3.3.0",
    "You route orders for a parts distributor. Ship from the first warehouse, in the order "
    "listed, that has every unit on hand: call check_inventory for the SKU first. Then call "
    "quote_carriers for the whole parcel from that warehouse and pick the cheapest quote "
    "that arrives within the order's promise_days; if none does, pick the fastest. Reply "
    'with only a JSON object {"warehouse", "carrier", "days"}.',
    "Route order {order_id}.",
)


def choose_origin(stock: Mapping[str, int], qty: int) -> str | None:
    """The first warehouse, in order of preference, with every unit on hand."""
    return next((w for w in WAREHOUSES if stock.get(w, 0) >= qty), None)


def parcel_kg(order: Mapping[str, Any]) -> float:
    return round(float(order["qty"] * order["unit_kg"]), 1)


def origin_note(origin: str, on_hand: int) -> str:
    """What the order model says when it asks for quotes."""
    return f"{origin} has {on_hand} on hand; asking for carrier quotes."


def choose_quote(quotes: Sequence[Mapping[str, Any]], promise_days: int | None) -> Any:
    """The cheapest quote that arrives within `promise_days` (any quote, when None); the
    fastest when none does."""
    within = [q for q in quotes if promise_days is None or q["days"] <= promise_days]
    if within:
        return min(within, key=lambda quote: Decimal(quote["usd"]))
    return min(quotes, key=lambda quote: (quote["days"], Decimal(quote["usd"])))


def route_order(origin: str, quote: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The routing decision and the final text that states it."""
    decision = {"warehouse": origin, "carrier": quote["carrier"], "days": quote["days"]}
    return decision, json_text(decision)


# loan.approve: limits on the bureau's figures and on the installment's share of income.

ASSESSMENT_STOP = "</assessment>"
_LOAN_TEMPLATE = _Template(
    "loan-assessment",
    "1.9.0",
    "You are a credit analyst assessing personal loan applications. Decline when the bureau "
    "score is below 640, the debt-to-income ratio is above 0.43, there is more than one "
    "delinquency in 24 months, or the monthly installment exceeds 30% of verified net "
    "income. Otherwise approve at an APR of 7.9 + 0.04 x (800 - score) + 6 x DTI + 0.75 per "
    "delinquency. Write <assessment>, one line of reasoning, the JSON "
    '{"approved", "apr"}, then </assessment>.',
    "Assess personal loan application {application_id}.",
)


@dataclass(frozen=True, slots=True)
class LendingLimits:
    """Where the loan model declines: below `min_score`, above the other maxima."""

    min_score: int = 640
    max_dti: float = 0.43
    max_delinquencies: int = 1
    max_installment_share: Decimal = Decimal("0.30")


LENDING_LIMITS = LendingLimits()  # the limits the recorded model applies, as its prompt says


def assess_loan(
    application: Mapping[str, Any],
    bureau: Mapping[str, Any],
    income: Mapping[str, Any],
    limits: LendingLimits = LENDING_LIMITS,
) -> tuple[dict[str, Any], str]:
    """The loan decision and the assessment text, up to its stop sequence."""
    score, dti, late = bureau["score"], bureau["dti"], bureau["delinquencies_24m"]
    installment = Decimal(application["amount"]) / application["term_months"]
    share = installment / Decimal(income["monthly_net"])
    findings = [
        finding
        for finding, applies in (
            (f"score below {limits.min_score}", score < limits.min_score),
            (f"DTI above {limits.max_dti}", dti > limits.max_dti),
            (f"{late} delinquencies", late > limits.max_delinquencies),
            ("installment too high", share > limits.max_installment_share),
        )
        if applies
    ]
    decision: dict[str, Any] = {"approved": not findings}
    if not findings:
        decision["apr"] = f"{7.9 + (800 - score) * 0.04 + dti * 6 + 0.75 * late:.2f}"
    verdict = "decline, " + ", ".join(findings) if findings else "approve"
    reasoning = (
        f"Score {score}, DTI {dti:.2f}, {late} delinquencies in 24 months, installment "
        f"{share:.0%} of income: {verdict}."
    )
    return decision, f"<assessment>\n{reasoning}\n{json_text(decision)}\n"


# payment.retry: never a hard decline or past the attempt limit; otherwise wait by cause.

_RETRY_TEMPLATE = _Template(
    "retry-advisor",
    "0.10.0",
    "You advise whether and when to retry a declined card payment. Call issuer_status for "
    "the card's BIN first. Never retry a hard decline (do_not_honor), nor when the next "
    "attempt would be the last the merchant allows. Retry insufficient_funds after 24 h; "
    "retry issuer_unavailable after 1 h if the issuer is operational, 4 h if degraded, "
    '12 h in an outage and 2 h if its status is unknown. End with a ```json block {"retry", '
    '"at"}.',
    "Payment {payment_id} was declined.",
)
# Hours to wait: by decline code for insufficient funds, else by the issuer's status.
RETRY_WAIT_H: Mapping[str, int] = {
    "insufficient_funds": 24,
    "operational": 1,
    "degraded": 4,
    "outage": 12,
    "unknown": 2,
}


def advise_retry(
    payment: Mapping[str, Any],
    policy: Mapping[str, Any],
    issuer_status: str | None,
    waits: Mapping[str, int] = RETRY_WAIT_H,
) -> tuple[dict[str, Any], str]:
    """The retry decision and the advice text; `issuer_status` is None when unknown."""
    code, attempt = payment["decline_code"], payment["attempt"]
    wait: int | None = None
    if attempt >= policy["max_attempts"] - 1:
        why = f"attempt {attempt} of {policy['max_attempts']}"
    elif code == "insufficient_funds":
        wait, why = waits[code], "funds often arrive by the next payday"
    elif code == "issuer_unavailable":
        status = issuer_status or "unknown"
        wait, why = waits[status], f"issuer status {status}"
    else:
        why = "a hard decline"
    decision: dict[str, Any] = {"retry": wait is not None}
    if wait is not None:
        at = datetime.fromisoformat(payment["declined_at"]) + timedelta(hours=wait)
        decision["at"] = at.isoformat()
    advice = f"retry in {wait} h" if wait is not None else "do not retry"
    return decision, f"{code}, {advice} ({why}).\n```json\n{json_text(decision)}\n```"


SYSTEM_PROMPTS: Mapping[str, str] = {
    "order.route": _ORDER_TEMPLATE.system,
    "loan.approve": _LOAN_TEMPLATE.system,
    "payment.retry": _RETRY_TEMPLATE.system,
}


# The recorded models, as each scenario's records name them.
DEMO_MODELS: Mapping[str, Model] = {
    "order.route": Model(
        provider="openai",
        name="gpt-4.1-mini",
        version="gpt-4.1-mini-2025-04-14",
        fingerprint="fp_6f2eabb9a5",
        temperature=0.0,
        seed=7,
        max_tokens=400,
        tools=[
            ToolDefinition(
                name="check_inventory",
                description="Units on hand per warehouse",
                parameters={
                    "type": "object",
                    "properties": {"sku": {"type": "string"}},
                    "required": ["sku"],
                },
            ),
            ToolDefinition(
                name="quote_carriers",
                description="Carrier quotes for a parcel",
                parameters={
                    "type": "object",
                    "properties": {
                        "from": {"type": "string", "description": "warehouse"},
                        "to": {"type": "string", "description": "postcode"},
                        "kg": {"type": "number"},
                    },
                    "required": ["from", "to", "kg"],
                },
            ),
        ],
    ),
    "loan.approve": Model(
        provider="anthropic",
        name="claude-sonnet-4",
        version="claude-sonnet-4-20250514",
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        max_tokens=1024,
        stop_sequences=[ASSESSMENT_STOP],
    ),
    "payment.retry": Model(
        provider="openai",
        name="o4-mini",
        version="o4-mini-2025-04-16",
        max_tokens=1200,
        tools=[
            ToolDefinition(
                name="issuer_status",
                description="Whether the card issuer is answering authorizations",
                parameters={
                    "type": "object",
                    "properties": {"bin": {"type": "string"}},
                    "required": ["bin"],
                },
            )
        ],
    ),
}


# --- order.route ---------------------------------------------------------------------------

_UNIT_KG = {"WID-220": 2.0, "GAD-118": 3.0, "BRK-540": 4.0, "HNG-031": 0.5}
# Carrier zones from the (western) warehouses, by destination postcode.
_ZONES = {"94107": 1, "98109": 1, "60614": 2, "30309": 3, "10013": 3}
_CUTOFFS = {"UPS": "17:00", "FedEx": "18:30"}
_SERVICE_LEVELS = {
    "sla/ups": "UPS Ground: 2 to 4 business days by zone; pickup cutoff 17:00.",
    "sla/fedex": "FedEx Express: 1 business day to zones 1-2, 2 to zone 3; cutoff 18:30.",
}


def _quotes(zone: int, kg: float) -> list[dict[str, Any]]:
    """What the carriers' rating APIs answer for a parcel to `zone`."""
    return [
        {"carrier": "UPS", "usd": f"{7.9 + 1.2 * kg + 0.85 * zone:.2f}", "days": zone + 1},
        {
            "carrier": "FedEx",
            "usd": f"{12.5 + 1.6 * kg + 1.1 * zone:.2f}",
            "days": 1 if zone < 3 else 2,
        },
    ]


def _order_route(run: _Run) -> Decision:
    rng = run.rng
    sku = rng.choice(list(_UNIT_KG))
    qty = rng.randint(1, 6)
    postcode = rng.choice(list(_ZONES))
    inputs: dict[str, Any] = {
        "order_id": f"SO-{rng.randint(100000, 999999)}",
        "sku": sku,
        "qty": qty,
        "postcode": postcode,
        # Business days promised at checkout: mostly standard, sometimes express.
        "promise_days": rng.choices((2, 3, 5), weights=(25, 15, 60))[0],
    }
    order = inputs | {"unit_kg": _UNIT_KG[sku]}
    stock = {warehouse: rng.randint(0, 40) for warehouse in WAREHOUSES}
    stock[WAREHOUSES[0]] = max(stock[WAREHOUSES[0]], qty)
    origin = choose_origin(stock, qty)
    assert origin is not None  # the first warehouse was stocked above
    kg = parcel_kg(order)
    quotes = _quotes(_ZONES[postcode], kg)
    decision, text = route_order(origin, choose_quote(quotes, inputs["promise_days"]))
    messages = _ORDER_TEMPLATE.render(
        inputs,
        {
            FACT_ORDER: order,
            "Warehouses": list(WAREHOUSES),
            "Carrier cutoffs": _CUTOFFS,
            "Service levels": _SERVICE_LEVELS,
        },
    )
    dialogue = _Dialogue(messages)
    documents = [
        RetrievedDocument(
            source="kb.carrier-sla",
            doc_id=doc_id,
            version="2025-04",
            score=round(rng.uniform(0.72, 0.93), 3),
            digest=_digest(content.encode()),
        )
        for doc_id, content in _SERVICE_LEVELS.items()
    ]
    model = "gpt-4.1-mini"
    started, ended = run.span(20, 60)
    retrieval = Retrieval(
        started_at=started,
        ended_at=ended,
        source="kb.carrier-sla",
        inputs={"query": f"carrier service levels to {postcode}"},
        outputs=[document.doc_id for document in documents],
    )
    started, ended = run.span(500, 1100)
    plan = LlmCall(
        started_at=started,
        ended_at=ended,
        usage=_usage(model, *dialogue.said("", ("check_inventory", {"sku": sku}))),
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
    dialogue.answered(stock)
    note = origin_note(origin, stock[origin])
    quote_arguments = {"from": origin, "to": postcode, "kg": kg}
    started, ended = run.span(600, 1300)
    ask_quotes = LlmCall(
        started_at=started,
        ended_at=ended,
        outputs={"text": note},
        usage=_usage(model, *dialogue.said(note, ("quote_carriers", quote_arguments))),
        response_id=f"chatcmpl-{run.hex(64)}",
        finish_reason="tool_calls",
    )
    started, ended = run.span(150, 600)
    quote = ToolCall(
        started_at=started,
        ended_at=ended,
        name="quote_carriers",
        call_id=f"call_{run.hex(48)}",
        arguments=quote_arguments,
        result=quotes,
    )
    dialogue.answered(quotes)
    started, ended = run.span(500, 1100)
    final = LlmCall(
        started_at=started,
        ended_at=ended,
        usage=_usage(model, *dialogue.said(text)),
        response_id=f"chatcmpl-{run.hex(64)}",
        finish_reason="stop",
    )
    steps: list[Step] = [retrieval, plan, inventory, ask_quotes, quote, final]
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
        inputs=inputs,
        context=[
            ContextSnapshot(
                name="carrier.cutoffs",
                version=cutoffs_version,
                digest=_digest(_CUTOFFS),
                fetched_at=run.at - timedelta(minutes=rng.randint(1, 50)),
                valid_until=run.at.replace(hour=17, minute=0, second=0, microsecond=0),
                value=_CUTOFFS,
            )
        ],
        retrieval=documents,
        prompt=_ORDER_TEMPLATE.prompt(
            variables={"warehouses": len(WAREHOUSES)},
            messages_blob=run.blob(msgspec.json.encode(messages)),
        ),
        model=msgspec.structs.replace(DEMO_MODELS[run.scenario]),
        steps=steps,
        output=Output(decision=decision, text=text, finish_reason="stop"),
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
    application = {
        "application_id": f"LA-{run.at.year}-{rng.randint(1000, 9999)}",
        "amount": str(amount),
        "term_months": rng.choice([24, 36, 48, 60]),
    }
    bureau_version = f"exp-{(run.at - timedelta(days=rng.randint(0, 6))).date().isoformat()}"
    bureau_fetched = run.at - timedelta(hours=rng.randint(1, 40))
    bureau: dict[str, Any] = {
        "bureau": "experian",
        "version": bureau_version,
        "score": rng.randint(620, 810),
        "dti": round(rng.uniform(0.12, 0.45), 2),
        "delinquencies_24m": rng.choices((0, 1, 2, 3), weights=(80, 14, 4, 2))[0],
        "open_accounts": rng.randint(2, 14),
        "inquiries_6m": rng.randint(0, 4),
        "utilization": round(rng.uniform(0.05, 0.9), 2),
    }
    income = {"monthly_net": f"{rng.randrange(3200, 12000, 50)}.00", "verified": True}
    decision, text = assess_loan(application, bureau, income)
    approved = decision["approved"]
    score, dti = bureau["score"], bureau["dti"]
    # Past these thresholds an underwriter signs the application off (a human approval).
    referral = [
        reason
        for reason, applies in (
            ("amount_above_auto_limit", amount > 20000),
            ("dti_above_0.35", dti > 0.35),
            ("score_below_660", score < 660),
        )
        if applies
    ]
    monthly_net = Decimal(str(income["monthly_net"]))
    # What the lending policy (v1, in Cedar) reads: the applicant's figures and features.
    policy_inputs = loan_policy_inputs(
        {
            "credit_score": score,
            "annual_income": str(monthly_net * 12),
            "amount": str(amount),
            "monthly_debt": str(Decimal(str(dti)) * monthly_net),
        }
    )
    result, reasons = assess_policy_v1(policy_inputs)
    messages = _LOAN_TEMPLATE.render(
        application, {FACT_APPLICATION: application, FACT_BUREAU: bureau, FACT_INCOME: income}
    )
    started, ended = run.span(2500, 5200)
    assess = LlmCall(
        started_at=started,
        ended_at=ended,
        inputs={"bureau": bureau_version},
        # The system prompt, the same for every application, is read from the prompt cache.
        usage=_usage(
            "claude-sonnet-4",
            *_Dialogue(messages).said(text),
            cached=count_tokens(_LOAN_TEMPLATE.system),
        ),
        response_id=f"msg_{run.hex(96)}",
        finish_reason="stop_sequence",
    )
    started, ended = run.span(3, 12)
    check = PolicyCheck(
        started_at=started,
        ended_at=ended,
        inputs=policy_inputs,
        outputs={"result": result, "reasons": reasons},
    )
    steps: list[Step] = [assess, check]
    if referral:
        # A referred application goes out only once an underwriter has signed it off.
        started, ended = run.span(60_000, 900_000)
        steps.append(
            HumanApproval(
                started_at=started,
                ended_at=ended,
                approver=f"underwriter:{rng.choice(['j.alvarez', 'k.osei', 'm.ito'])}",
                inputs={"referred_for": referral},
                outputs={"approved": approved},
            )
        )
    bureau_blob = run.blob(msgspec.json.encode(bureau))
    income_blob = run.blob(msgspec.json.encode(income))
    return Decision(
        id=run.id,
        tenant=run.tenant,
        service=DEMO_SERVICES[run.scenario],
        decision_type=run.scenario,
        occurred_at=run.at,
        subject=f"applicant_{rng.randint(100000, 999999)}",
        inputs=application,
        context=[
            ContextSnapshot(
                name="credit.bureau_report",
                version=bureau_version,
                digest=bureau_blob,
                fetched_at=bureau_fetched,
                valid_until=bureau_fetched + timedelta(days=30),
                blob=bureau_blob,
            ),
            ContextSnapshot(
                name="income.verification",
                version=str(rng.randint(1, 4)),
                digest=income_blob,
                fetched_at=run.at - timedelta(days=rng.randint(1, 20)),
                blob=income_blob,
            ),
        ],
        prompt=_LOAN_TEMPLATE.prompt(
            variables={"product": "personal"},
            messages_blob=run.blob(msgspec.json.encode(messages)),
        ),
        model=msgspec.structs.replace(DEMO_MODELS[run.scenario]),
        steps=steps,
        output=Output(decision=decision, text=text, finish_reason="stop_sequence"),
        usage=run.total(steps),
        policy=PolicyEvaluation(
            engine="cedar",
            policy_id=LOAN_POLICY_ID,
            version=LOAN_POLICY_V1.version,
            digest=LOAN_POLICY_V1.digest,
            result=result,
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

_ISSUERS = ("Chase", "Barclays", "BBVA", "Citi", "HSBC")


def _payment_retry(run: _Run) -> Decision:
    rng = run.rng
    amount = Decimal(rng.randrange(999, 25000)) / 100
    currency = rng.choice(["EUR", "USD", "GBP"])
    declined_at = (run.at - timedelta(seconds=rng.randint(2, 40))).replace(microsecond=0)
    inputs: dict[str, Any] = {
        "payment_id": f"pay_{run.hex(64)}",
        "amount": str(amount),
        "currency": currency,
        "decline_code": rng.choices(
            ("insufficient_funds", "do_not_honor", "issuer_unavailable"), weights=(40, 15, 45)
        )[0],
        "attempt": rng.randint(1, 3),
        "declined_at": declined_at.isoformat(),
    }
    card_bin = str(rng.randint(400000, 559999))
    config = {"max_attempts": 4, "window_h": 96}
    # The issuer status API answers about two times in three; otherwise it times out.
    status = (
        rng.choices(("operational", "degraded", "outage"), weights=(60, 30, 10))[0]
        if rng.random() < 0.65
        else None
    )
    decision, text = advise_retry(inputs, config, status)
    messages = _RETRY_TEMPLATE.render(
        inputs, {FACT_PAYMENT: inputs | {"card_bin": card_bin}, FACT_RETRY_POLICY: config}
    )
    dialogue = _Dialogue(messages)
    model = "o4-mini"
    lookup_arguments = {"bin": card_bin}
    started, ended = run.span(900, 2400)
    # A reasoning model's hidden reasoning is billed as output.
    asked, said = dialogue.said("", ("issuer_status", lookup_arguments))
    reasoning = rng.choice([128, 256])
    plan = LlmCall(
        started_at=started,
        ended_at=ended,
        usage=_usage(model, asked, said + reasoning, reasoning=reasoning),
        finish_reason="tool_calls",
    )
    call_id = f"call_{run.hex(48)}"
    if status is None:
        started, ended = run.span(2000, 2010)
        failure = StepError(type="timeout", message="issuer status API did not answer in 2000 ms")
        lookup = ToolCall(
            started_at=started,
            ended_at=ended,
            name="issuer_status",
            call_id=call_id,
            arguments=lookup_arguments,
            error=failure,
        )
        dialogue.answered({"error": {"type": failure.type, "message": failure.message}})
    else:
        started, ended = run.span(60, 400)
        lookup = ToolCall(
            started_at=started,
            ended_at=ended,
            name="issuer_status",
            call_id=call_id,
            arguments=lookup_arguments,
            result={"bin": card_bin, "issuer": rng.choice(_ISSUERS), "status": status},
        )
        dialogue.answered(lookup.result)
    started, ended = run.span(700, 1800)
    asked, said = dialogue.said(text)
    reasoning = rng.choice([64, 192])
    final = LlmCall(
        started_at=started,
        ended_at=ended,
        usage=_usage(model, asked, said + reasoning, reasoning=reasoning),
        finish_reason="stop",
    )
    steps: list[Step] = [plan, lookup, final]
    return Decision(
        id=run.id,
        tenant=run.tenant,
        service=DEMO_SERVICES[run.scenario],
        decision_type=run.scenario,
        occurred_at=run.at,
        subject=f"cust_{rng.randint(10000, 99999)}",
        inputs=inputs,
        context=[
            ContextSnapshot(
                name="merchant.retry_config",
                version="12",
                digest=_digest(config),
                fetched_at=run.at - timedelta(seconds=rng.randint(5, 300)),
                value=config,
            )
        ],
        prompt=_RETRY_TEMPLATE.prompt(messages=messages),
        model=msgspec.structs.replace(DEMO_MODELS[run.scenario], seed=rng.randint(1, 2**31)),
        steps=steps,
        output=Output(decision=decision, text=text, finish_reason="stop"),
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
