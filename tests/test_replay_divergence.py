"""Divergence: the first step where a replayed run leaves the recorded one, and live tools.

No real model provider is reachable here: `tests.model_servers.ModelServer` speaks the
OpenAI wire format as a deterministic model. Offered tools, it calls the first one
(``lookup``) with the last user message as ``applicant``, then answers in text; a model
name ending in ``-loop`` calls the tool on every turn. Each recorded decision below is
crafted so that this behaviour departs from it in one known way, at a known step: every
record starts with a retrieval (step 0), so step indexes are not just LLM call indexes.
"""

from __future__ import annotations

from typing import Any

from ledger.records.decision import Decision, StepError
from ledger.records.replay import (
    Divergence,
    ReplayedLlmCall,
    ReplayedToolCall,
    ReplayedToolCallRequest,
    ToolCallChange,
)
from replay.engine.engine import ReplayPlan
from replay.engine.run import EXTRA_MODEL_CALLS
from replay.engine.tools import ToolHandlers
from tests import replay_support
from tests.model_servers import ModelServer
from tests.replay_support import ASKED, Steps, compact, decision, recorded_text, replay

PINNED = ReplayPlan(mode="pinned")
FILE = {"score": 712, "band": "prime"}
LIVE_FILE = {"score": 590, "band": "subprime"}


# The local model server fixtures of `tests.replay_support`, bound here for pytest to find.
model_server = replay_support.model_server
srv = replay_support.srv


class Counting:
    """A live tool handler that answers `result` and remembers what it was asked."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.calls: list[dict[str, Any]] = []

    def __call__(self, arguments: dict[str, Any]) -> Any:
        self.calls.append(arguments)
        return self.result


def recorded(steps: Steps, final: str, decided: dict[str, Any] | None = None) -> Decision:
    return decision(steps, decided=decided if decided is not None else FILE, text=final)


def kinds(steps: list[Any]) -> list[str]:
    return ["llm" if isinstance(s, ReplayedLlmCall) else "tool" for s in steps]


def test_another_tool_is_flagged_at_the_recorded_tool_step(srv: ModelServer) -> None:
    record_of = recorded(
        Steps().retrieval().llm().tool("fetch_history", ASKED, FILE).llm(),
        recorded_text("scorer-v1", FILE),
    )

    replayed = replay(record_of, PINNED, server=srv)

    assert replayed.verdict == "diverged"
    assert replayed.divergence == Divergence(
        kind="other_tool",
        recorded_step=2,
        replayed_step=0,
        expected={"name": "fetch_history", "arguments": ASKED},
        actual={"name": "lookup", "arguments": ASKED},
        detail="the replay called 'lookup' where the record called 'fetch_history' (step 2)",
    )
    # The run stopped there: no result for `lookup` was recorded and no handler is live.
    assert kinds(replayed.steps) == ["llm"]
    assert srv.request_count == 1
    assert replayed.output is None
    [change] = replayed.diff.tool_calls
    assert (change.position, change.change) == (0, "name")
    assert change.before is not None
    assert change.after is not None
    assert (change.before.name, change.after.name) == ("fetch_history", "lookup")


def test_other_arguments_are_flagged_at_the_recorded_tool_step(srv: ModelServer) -> None:
    elsewhere = {"applicant": "applicant B-2 asks for 900"}
    record_of = recorded(
        Steps().retrieval().llm().tool("lookup", elsewhere, FILE).llm(),
        recorded_text("scorer-v1", FILE),
    )

    replayed = replay(record_of, PINNED, server=srv)

    assert replayed.verdict == "diverged"
    divergence = replayed.divergence
    assert divergence is not None
    assert (divergence.kind, divergence.recorded_step, divergence.replayed_step) == (
        "other_arguments",
        2,
        0,
    )
    assert divergence.expected == {"name": "lookup", "arguments": elsewhere}
    assert divergence.actual == {"name": "lookup", "arguments": ASKED}
    assert [(c.position, c.change) for c in replayed.diff.tool_calls] == [(0, "arguments")]
    assert kinds(replayed.steps) == ["llm"]


def test_a_run_that_ends_early_is_flagged_at_the_tool_call_it_skipped(srv: ModelServer) -> None:
    """The record looked the applicant up twice; the model answers after the first."""
    second = {"applicant": "co-signer"}
    record_of = recorded(
        Steps()
        .retrieval()
        .llm()
        .tool("lookup", ASKED, FILE)
        .llm()
        .tool("lookup", second, {"score": 650})
        .llm(),
        "recorded final answer",
    )

    replayed = replay(record_of, PINNED, server=srv)

    assert replayed.verdict == "diverged"
    divergence = replayed.divergence
    assert divergence is not None
    assert (divergence.kind, divergence.recorded_step, divergence.replayed_step) == (
        "ended_early",
        4,
        2,
    )
    assert divergence.expected == {"name": "lookup", "arguments": second}
    assert divergence.actual is None
    # The first call matched and got the recorded result; then the model answered.
    first, fed, final = replayed.steps
    assert isinstance(first, ReplayedLlmCall)
    assert first.recorded_step == 1
    assert isinstance(fed, ReplayedToolCall)
    assert (fed.recorded_step, fed.source, fed.result) == (2, "recorded", FILE)
    assert isinstance(final, ReplayedLlmCall)
    assert final.recorded_step == 3
    assert final.text == recorded_text("scorer-v1", FILE)
    # It ran to its end, so its decision is compared, and the skipped call is `removed`.
    assert replayed.output is not None
    assert replayed.output.decision == FILE
    [change] = replayed.diff.tool_calls
    assert change == ToolCallChange(
        position=1,
        change="removed",
        before=ReplayedToolCallRequest(call_id="call_recorded_4", name="lookup", arguments=second),
    )


def test_a_run_that_ends_late_is_flagged_after_the_last_recorded_step(srv: ModelServer) -> None:
    """The record answered at once; the model asks for a tool first."""
    record_of = recorded(Steps().retrieval().llm(), recorded_text("scorer-v1"))

    replayed = replay(record_of, PINNED, server=srv)

    assert replayed.verdict == "diverged"
    divergence = replayed.divergence
    assert divergence is not None
    assert (divergence.kind, divergence.recorded_step, divergence.replayed_step) == (
        "ended_late",
        2,
        0,
    )
    assert divergence.expected is None
    assert divergence.actual == {"name": "lookup", "arguments": ASKED}
    assert kinds(replayed.steps) == ["llm"]
    [change] = replayed.diff.tool_calls
    assert (change.position, change.change) == (0, "added")


def test_a_live_handler_carries_a_diverged_run_to_its_end(srv: ModelServer) -> None:
    record_of = recorded(Steps().retrieval().llm(), recorded_text("scorer-v1"))
    lookup = Counting(LIVE_FILE)

    replayed = replay(record_of, PINNED, server=srv, tools=ToolHandlers({"lookup": lookup}))

    assert lookup.calls == [ASKED]
    # Still diverged, at the first point of departure, but the run went on to its answer.
    assert replayed.verdict == "diverged"
    assert replayed.divergence is not None
    assert replayed.divergence.kind == "ended_late"
    _, fed, final = replayed.steps
    assert isinstance(fed, ReplayedToolCall)
    assert (fed.source, fed.result, fed.recorded_step) == ("live", LIVE_FILE, None)
    assert isinstance(final, ReplayedLlmCall)
    assert final.text == recorded_text("scorer-v1", LIVE_FILE)
    assert replayed.output is not None
    assert replayed.output.decision == LIVE_FILE
    assert srv.requests[1].body["messages"][-1]["content"] == compact(LIVE_FILE)


def test_a_model_that_keeps_calling_tools_is_stopped_as_ended_late(srv: ModelServer) -> None:
    record_of = recorded(
        Steps().retrieval().llm().tool("lookup", ASKED, FILE).llm(),
        recorded_text("scorer-v1", FILE),
    )
    lookup = Counting(FILE)

    replayed = replay(
        record_of,
        ReplayPlan(mode="counterfactual", version="loop"),
        server=srv,
        tools=ToolHandlers({"lookup": lookup}),
    )

    bound = 2 + 1 + EXTRA_MODEL_CALLS  # recorded LLM calls + tool calls + the allowance
    assert srv.request_count == bound
    assert len(lookup.calls) == bound
    assert replayed.verdict == "diverged"
    divergence = replayed.divergence
    assert divergence is not None
    # The first call matched the record; the second departed, after its end.
    assert (divergence.kind, divergence.recorded_step, divergence.replayed_step) == (
        "ended_late",
        4,
        2,
    )
    assert divergence.detail.endswith(f"stopped after {bound} model calls")
    assert kinds(replayed.steps) == ["llm", "tool"] * bound
    assert replayed.output is None


def test_a_live_handler_runs_only_for_the_tool_it_is_registered_for(srv: ModelServer) -> None:
    record_of = recorded(Steps().retrieval().llm(), recorded_text("scorer-v1"))
    history = Counting({"loans": 2})

    replayed = replay(record_of, PINNED, server=srv, tools=ToolHandlers({"fetch_history": history}))

    assert history.calls == []
    assert replayed.verdict == "diverged"
    assert kinds(replayed.steps) == ["llm"]
    assert srv.request_count == 1


def test_a_registered_handler_answers_even_a_matching_call(srv: ModelServer) -> None:
    """Registered explicitly, a tool is run live: its answer replaces the recorded one, and
    the model's answer follows it."""
    record_of = recorded(
        Steps().retrieval().llm().tool("lookup", ASKED, FILE).llm(),
        recorded_text("scorer-v1", FILE),
    )
    lookup = Counting(LIVE_FILE)

    replayed = replay(record_of, PINNED, server=srv, tools=ToolHandlers({"lookup": lookup}))

    assert lookup.calls == [ASKED]
    fed = replayed.steps[1]
    assert isinstance(fed, ReplayedToolCall)
    assert (fed.source, fed.recorded_step, fed.result) == ("live", 2, LIVE_FILE)
    # No divergence: the same tool with the same arguments. The decision followed the tool.
    assert replayed.divergence is None
    assert replayed.verdict == "changed"
    assert [(c.path, c.before, c.after) for c in replayed.diff.decision] == [
        ("/score", 712, 590),
        ("/band", "prime", "subprime"),
    ]


def test_a_failing_live_handler_is_a_tool_error_the_model_reads(srv: ModelServer) -> None:
    record_of = recorded(Steps().retrieval().llm(), recorded_text("scorer-v1"))

    def broken(arguments: dict[str, Any]) -> Any:
        raise ConnectionError("credit bureau unreachable")

    replayed = replay(record_of, PINNED, server=srv, tools=ToolHandlers({"lookup": broken}))

    fed = replayed.steps[1]
    assert isinstance(fed, ReplayedToolCall)
    assert fed.error is not None
    assert (fed.error.type, fed.error.message) == ("ConnectionError", "credit bureau unreachable")
    sent = srv.requests[1].body["messages"][-1]["content"]
    assert sent == compact(
        {"error": {"type": "ConnectionError", "message": "credit bureau unreachable"}}
    )
    assert replayed.verdict == "diverged"  # ended_late: the record had no tool call


def test_a_recorded_tool_error_is_fed_back_as_the_record_had_it(srv: ModelServer) -> None:
    timeout = StepError(type="timeout", message="lookup did not answer in 2000 ms")
    fed_back = {"error": {"type": "timeout", "message": timeout.message}}
    record_of = decision(
        Steps().retrieval().llm().tool("lookup", ASKED, error=timeout).llm(),
        decided=fed_back,
        text=recorded_text("scorer-v1", fed_back),
    )

    replayed = replay(record_of, PINNED, server=srv)

    assert srv.requests[1].body["messages"][-1]["content"] == compact(fed_back)
    fed = replayed.steps[1]
    assert isinstance(fed, ReplayedToolCall)
    assert fed.error == timeout
    # The answer quotes the error object, which is then the decision, as it was recorded.
    assert replayed.verdict == "identical"
    assert replayed.output is not None
    assert replayed.output.decision == fed_back
