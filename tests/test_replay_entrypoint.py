"""The ``module:function`` provider: versioned decision functions behind the same pool,
with two versions of the loan-approval rule from `service.demo.loan_rules`."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Coroutine
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from replay.providers import (
    ChatRequest,
    ChatResponse,
    EntryPointError,
    EntryPointProvider,
    ProviderPool,
    ProviderTimeout,
    parse_registry,
)
from service.demo.loan_rules import approve_loan_v1, approve_loan_v2

T = TypeVar("T")

REGISTRY = """
[providers.rules]
kind = "python"
timeout_s = 0.5
retry = { max_retries = 3, base_s = 0.001, cap_s = 0.002 }

[[models]]
name = "loan-rules"
provider = "rules"
entry_point = "service.demo.loan_rules:approve_loan_{version}"
price = { input_per_mtok = "1", output_per_mtok = "1" }

[[models]]
name = "fixture"
provider = "rules"
entry_point = "tests.test_replay_entrypoint:{version}"

[providers.impatient]
kind = "python"
timeout_s = 0.2
retry = { max_retries = 0 }

[[models]]
name = "impatient"
provider = "impatient"
entry_point = "tests.test_replay_entrypoint:{version}"
"""

# Approved by v1 (score 660 >= 650, DTI 0.40 <= 0.43), declined by v2 on all three counts.
BORDERLINE = {
    "applicant_id": "A-17",
    "credit_score": 660,
    "annual_income": "60000",
    "monthly_debt": "2000",
    "amount": "35000",
}
STRONG = {
    "applicant_id": "A-18",
    "credit_score": 760,
    "annual_income": "120000",
    "monthly_debt": "1500",
    "amount": "20000",
}

CALLS: list[dict[str, Any]] = []


def raises(inputs: dict[str, Any]) -> dict[str, Any]:
    CALLS.append(inputs)
    raise KeyError("credit_score")


def returns_a_list(inputs: dict[str, Any]) -> Any:
    return ["approved"]


def returns_an_object(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"handle": object()}


def mutates(inputs: dict[str, Any]) -> dict[str, Any]:
    inputs["credit_score"] = 0
    return {"approved": False}


async def async_rule(inputs: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"approved": inputs["credit_score"] > 700, "amount": Decimal("12.50")}


# The slow function runs until the test releases it, so a test can tell that the caller
# got control back while the function was still running, without measuring time.
RELEASE_SLOW = threading.Event()


def slow(inputs: dict[str, Any]) -> dict[str, Any]:
    RELEASE_SLOW.wait(timeout=30)
    return {}


not_callable = 42


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def decide(version: str, inputs: dict[str, Any], model: str = "loan-rules") -> ChatResponse:
    async def go() -> ChatResponse:
        async with ProviderPool(parse_registry(REGISTRY), env={}) as pool:
            return await pool.complete(ChatRequest(model=model, version=version, inputs=inputs))

    return run(go())


def test_two_rule_versions_decide_differently() -> None:
    v1 = decide("v1", BORDERLINE)
    v2 = decide("v2", BORDERLINE)
    assert v1.decision == {
        "approved": True,
        "reasons": [],
        "debt_to_income": "0.4000",
        "rule_version": "v1",
    }
    assert v2.decision is not None
    assert v2.decision["approved"] is False
    assert v2.decision["reasons"] == [
        "credit_score_below_680",
        "dti_above_0.36",
        "amount_above_half_income",
    ]
    # Both versions agree on a strong applicant.
    assert decide("v1", STRONG).decision == approve_loan_v1(STRONG)
    assert decide("v2", STRONG).decision == approve_loan_v2(STRONG)
    assert approve_loan_v1(STRONG)["approved"] is approve_loan_v2(STRONG)["approved"] is True


def test_the_result_fits_the_common_response() -> None:
    response = decide("v2", BORDERLINE)
    assert json.loads(response.text) == response.decision
    assert response.text == json.dumps(response.decision, sort_keys=True, separators=(",", ":"))
    assert response.finish_reason == "stop"
    assert response.tool_calls == []
    assert (response.input_tokens, response.output_tokens) == (0, 0)
    assert response.model == "loan-rules"
    assert response.version == "v2"
    assert response.provider == "rules"
    assert response.model_version == "service.demo.loan_rules:approve_loan_v2"
    assert response.cost == Decimal(0)
    assert response.attempts == 1


def test_the_fingerprint_is_the_source_of_the_function_that_ran() -> None:
    v1, v1_again, v2 = decide("v1", STRONG), decide("v1", BORDERLINE), decide("v2", STRONG)
    assert v1.fingerprint is not None
    assert v1.fingerprint.startswith("sha256:")
    assert v1.fingerprint == v1_again.fingerprint != v2.fingerprint


def test_a_coroutine_function_is_awaited_and_decimals_become_json_strings() -> None:
    response = decide("async_rule", {"credit_score": 720}, model="fixture")
    assert response.decision == {"approved": True, "amount": Decimal("12.50")}
    assert response.text == '{"amount":"12.50","approved":true}'


def test_the_function_cannot_change_the_recorded_inputs() -> None:
    inputs = {"credit_score": 700}
    decide("mutates", inputs, model="fixture")
    assert inputs == {"credit_score": 700}


def test_a_raising_function_is_an_entry_point_error_and_not_retried() -> None:
    CALLS.clear()
    with pytest.raises(EntryPointError) as caught:
        decide("raises", {"x": 1}, model="fixture")
    assert str(caught.value) == (
        "rules: tests.test_replay_entrypoint:raises raised KeyError: 'credit_score'"
    )
    assert CALLS == [{"x": 1}]


@pytest.mark.parametrize(
    ("function", "problem"),
    [
        ("returns_a_list", "returned list, not a dict decision"),
        ("returns_an_object", "returned a decision that is not JSON"),
        ("not_callable", "is not callable"),
        ("missing", "has no attribute 'missing'"),
    ],
)
def test_bad_functions_are_one_line_errors(function: str, problem: str) -> None:
    with pytest.raises(EntryPointError, match=problem) as caught:
        decide(function, {}, model="fixture")
    assert "\n" not in str(caught.value)


def test_a_missing_module_is_an_entry_point_error() -> None:
    provider = EntryPointProvider("rules")
    with pytest.raises(EntryPointError, match="cannot import 'no_such_rules_pkg'"):
        provider.load("no_such_rules_pkg:decide")
    with pytest.raises(EntryPointError, match="is not 'module:function'"):
        provider.load("no_colon_here")


def test_a_slow_function_times_out() -> None:
    RELEASE_SLOW.clear()

    async def go() -> float:
        async with ProviderPool(parse_registry(REGISTRY), env={}) as pool:
            started = time.monotonic()
            try:
                with pytest.raises(
                    ProviderTimeout, match=r"impatient: no complete answer within 0\.2s"
                ):
                    await pool.complete(ChatRequest(model="impatient", version="slow", inputs={}))
                # The caller got control back at the timeout while the function still ran:
                # the thread itself cannot be stopped.
                assert not RELEASE_SLOW.is_set()
                return time.monotonic() - started
            finally:
                # Let the thread end, so that the event loop's shutdown need not wait for it.
                RELEASE_SLOW.set()

    assert run(go()) < 5
