"""The demo models behind `prov models serve`: deterministic stand-ins for the models the
demo records name, and for newer ones to compare them with.

A demo model reads the conversation as a real one would: the scenario its system prompt
sets (`service.demo.scenarios.SYSTEM_PROMPTS`), the facts in the user message
(`service.demo.scenarios.read_facts`), the tool calls it already made and the results fed back. It
answers by the rules `service.demo.scenarios` built the records with, so a recorded snapshot
(``gpt-4.1-mini-2025-04-14``, ``claude-sonnet-4-20250514``, ``o4-mini-2025-04-16``)
called with a recorded conversation asks for the recorded tool calls, with the same
arguments, and ends with the recorded decision: a pinned replay of a demo record is
identical.

The newer snapshots (``gpt-5-mini-2025-08-07``, ``claude-sonnet-4-5-20250929``) differ as
a model upgrade does, on some records only:

- orders: the cheapest carrier whatever the delivery promise (changed decisions); a
  single unit quoted from the first warehouse without checking stock (another tool:
  diverged); a parcel's weight rounded up to whole kilograms (other arguments);
- loans: stricter limits, so some approvals become declines;
- payment retries: after a second decline for insufficient funds the retry waits three
  days, not one; a hard decline is answered without looking the issuer up (ended early).

A model name is a snapshot or its alias (``gpt-4.1-mini``), and the answer names the
snapshot, as providers do; any other name is `ModelNotFound` (HTTP 404 on the wire).
`demo_app` serves them counting tokens as the demo records do
(`service.demo.scenarios.count_tokens`),
so a pinned replay reports the recorded token counts too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from replay.providers.types import ChatRequest
from service.demo.model_server import Answer, AsgiApp, ModelNotFound, ToolUse, model_app
from service.demo.scenarios import (
    ASSESSMENT_STOP,
    DEMO_MODELS,
    FACT_APPLICATION,
    FACT_BUREAU,
    FACT_INCOME,
    FACT_ORDER,
    FACT_PAYMENT,
    FACT_RETRY_POLICY,
    LENDING_LIMITS,
    RETRY_WAIT_H,
    SYSTEM_PROMPTS,
    WAREHOUSES,
    LendingLimits,
    advise_retry,
    assess_loan,
    choose_origin,
    choose_quote,
    count_tokens,
    json_text,
    origin_note,
    parcel_kg,
    read_facts,
    route_order,
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One dated model snapshot the demo server answers as."""

    name: str
    alias: str
    newer: bool  # answers as the upgrade does
    fingerprint: str | None = None


SNAPSHOTS: tuple[Snapshot, ...] = (
    *(
        Snapshot(model.version, model.name, False, model.fingerprint)
        for model in DEMO_MODELS.values()
    ),
    Snapshot("gpt-5-mini-2025-08-07", "gpt-5-mini", True, "fp_3f58d112f7"),
    Snapshot("claude-sonnet-4-5-20250929", "claude-sonnet-4-5", True),
)
_BY_NAME: Mapping[str, Snapshot] = {
    name: snapshot for snapshot in SNAPSHOTS for name in (snapshot.name, snapshot.alias)
}
NEWER_LENDING_LIMITS = LendingLimits(min_score=670, max_dti=0.38)
_UNREADABLE = "I can only route orders, assess loans and advise on payment retries."
_MALFORMED = "The facts in this request are incomplete or malformed; I cannot decide on them."


def demo_app() -> AsgiApp:
    """The demo models in both wire formats, as `prov models serve` runs them."""
    return model_app(demo_model, tokens=count_tokens)


def demo_model(request: ChatRequest) -> Answer:
    """The answer of the snapshot `request.model` names (a `service.demo.model_server.Model`)."""
    snapshot = _BY_NAME.get(request.model)
    if snapshot is None:
        raise ModelNotFound(request.model)
    reading = _read(request)
    answer_as = _SCENARIOS.get(reading.scenario or "")
    try:
        answer = answer_as(reading, snapshot.newer) if answer_as else Answer(text=_UNREADABLE)
    except (LookupError, TypeError, ValueError, ArithmeticError):
        # Facts of the wrong shape: like a model, say so rather than fail the request.
        answer = Answer(text=_MALFORMED)
    return dataclasses.replace(answer, model=snapshot.name, fingerprint=snapshot.fingerprint)


@dataclass(frozen=True, slots=True)
class _Reading:
    """What the model took from the conversation."""

    scenario: str | None
    facts: dict[str, Any]
    asked: dict[str, dict[str, Any]]  # tool name -> the arguments it was last called with
    results: dict[str, Any]  # tool name -> its last result, decoded

    def failed(self, tool: str) -> bool:
        result = self.results.get(tool)
        return isinstance(result, dict) and "error" in result


def _read(request: ChatRequest) -> _Reading:
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    scenario = next((s for s, prompt in SYSTEM_PROMPTS.items() if prompt == system), None)
    user = next((m.content for m in request.messages if m.role == "user"), "")
    calls = {call.call_id: call for m in request.messages for call in m.tool_calls}
    results: dict[str, Any] = {}
    for message in request.messages:
        call = calls.get(message.tool_call_id or "")
        if message.role == "tool" and call is not None:
            try:
                results[call.name] = msgspec.json.decode(message.content)
            except msgspec.DecodeError:
                results[call.name] = message.content
    asked = {call.name: call.arguments for call in calls.values()}
    return _Reading(scenario, read_facts(user), asked, results)


def _ask(tool: str, arguments: dict[str, Any], text: str = "") -> Answer:
    return Answer(text=text, tool_calls=(ToolUse(tool, arguments),))


def _hold(reason: str) -> Answer:
    return Answer(text=json_text({"hold": True, "reason": reason}))


def _route_order(reading: _Reading, newer: bool) -> Answer:
    order = reading.facts.get(FACT_ORDER)
    if not isinstance(order, dict):
        return _hold("the request names no order")
    if "quote_carriers" in reading.results:
        return _choose_carrier(reading, order, newer)
    if "check_inventory" in reading.results:
        return _quote_from_stock(reading, order, newer)
    if newer and order["qty"] == 1:
        return _ask_quotes(order, WAREHOUSES[0], newer)  # a single unit is taken to be in stock
    return _ask("check_inventory", {"sku": order["sku"]})


def _ask_quotes(order: dict[str, Any], origin: str, newer: bool, text: str = "") -> Answer:
    kg = parcel_kg(order)
    if newer:
        kg = float(math.ceil(kg))  # carriers bill whole kilograms
    return _ask("quote_carriers", {"from": origin, "to": order["postcode"], "kg": kg}, text)


def _quote_from_stock(reading: _Reading, order: dict[str, Any], newer: bool) -> Answer:
    stock = reading.results["check_inventory"]
    if reading.failed("check_inventory") or not isinstance(stock, dict):
        return _hold("inventory is unavailable")
    origin = choose_origin(stock, order["qty"])
    if origin is None:
        return _hold(f"no warehouse has {order['qty']} units on hand")
    return _ask_quotes(order, origin, newer, origin_note(origin, stock[origin]))


def _choose_carrier(reading: _Reading, order: dict[str, Any], newer: bool) -> Answer:
    quotes = reading.results["quote_carriers"]
    if reading.failed("quote_carriers") or not isinstance(quotes, list) or not quotes:
        return _hold("no carrier quoted")
    promise = None if newer else order["promise_days"]
    _, text = route_order(reading.asked["quote_carriers"]["from"], choose_quote(quotes, promise))
    return Answer(text=text)


def _assess_loan(reading: _Reading, newer: bool) -> Answer:
    facts = reading.facts
    if not all(label in facts for label in (FACT_APPLICATION, FACT_BUREAU, FACT_INCOME)):
        return Answer(text=f"<assessment>\nThe application is incomplete.\n{ASSESSMENT_STOP}")
    limits = NEWER_LENDING_LIMITS if newer else LENDING_LIMITS
    _, text = assess_loan(facts[FACT_APPLICATION], facts[FACT_BUREAU], facts[FACT_INCOME], limits)
    return Answer(text=text + ASSESSMENT_STOP)  # the server stops there


def _advise_retry(reading: _Reading, newer: bool) -> Answer:
    payment, policy = reading.facts.get(FACT_PAYMENT), reading.facts.get(FACT_RETRY_POLICY)
    if not isinstance(payment, dict) or not isinstance(policy, dict):
        return Answer(text="The request names no declined payment.")
    hard_decline = payment["decline_code"] == "do_not_honor"
    if "issuer_status" not in reading.results and not (newer and hard_decline):
        return _ask("issuer_status", {"bin": payment["card_bin"]})
    result = reading.results.get("issuer_status")
    status = (
        result.get("status")
        if isinstance(result, dict) and not reading.failed("issuer_status")
        else None
    )
    waits = RETRY_WAIT_H
    if newer and payment["attempt"] >= 2:
        waits = {**RETRY_WAIT_H, "insufficient_funds": 72}
    _, text = advise_retry(payment, policy, status, waits)
    return Answer(text=text)


_SCENARIOS: Mapping[str, Callable[[_Reading, bool], Answer]] = {
    "order.route": _route_order,
    "loan.approve": _assess_loan,
    "payment.retry": _advise_retry,
}
