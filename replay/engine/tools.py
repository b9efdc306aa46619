"""Tool results for a replayed run: from the record, or from a live handler.

As in Temporal, a replay never calls the live world on its own: a tool call the replayed
model asks for is answered with the recorded result of the call it matches, fed back under
the new call id. Only a tool registered here by name is run live, and then for every call
of that tool (in pinned and counterfactual replays; a deterministic replay feeds the
record only). Handlers are plain or coroutine functions of the call's arguments (a copy,
so a handler cannot alter what the replay records) that return a JSON value. A handler
that raises, times out or returns something that is not JSON gives the model a tool
error, as a failing tool would have in the recorded run.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from ledger.records.decision import StepError
from replay.engine.requests import RecordedTool
from replay.providers.errors import one_line

ToolHandler = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What a tool call gave back: a JSON `result`, or an `error`."""

    result: Any = None
    error: StepError | None = None


def recorded_outcome(tool: RecordedTool) -> ToolOutcome:
    return ToolOutcome(tool.call.result, tool.call.error)


class ToolHandlers:
    """Live tool handlers, registered explicitly by tool name."""

    def __init__(
        self, handlers: Mapping[str, ToolHandler] | None = None, *, timeout_s: float = 30.0
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self.timeout_s = timeout_s
        self._handlers: dict[str, ToolHandler] = {}
        for name, handler in (handlers or {}).items():
            self.register(name, handler)

    def register(self, name: str, handler: ToolHandler) -> None:
        if not name:
            raise ValueError("a tool handler needs a tool name")
        if name in self._handlers:
            raise ValueError(f"a handler for tool {name!r} is already registered")
        if not callable(handler):
            raise ValueError(f"the handler for tool {name!r} is not callable")
        self._handlers[name] = handler

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._handlers)

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Run the handler for `name`; every failure of it is a tool error, never raised."""
        handler = self._handlers[name]
        mine = copy.deepcopy(arguments)
        deadline = asyncio.timeout(self.timeout_s)
        try:
            async with deadline:
                if inspect.iscoroutinefunction(handler):
                    result = await handler(mine)
                else:
                    result = await asyncio.to_thread(handler, mine)
        except Exception as error:  # the handler is foreign code: any failure is the tool's
            if isinstance(error, TimeoutError) and deadline.expired():
                message = f"tool {name!r} did not answer within {self.timeout_s:g}s"
                return ToolOutcome(error=StepError(type="timeout", message=message))
            return ToolOutcome(
                error=StepError(type=type(error).__name__, message=one_line(str(error)))
            )
        try:
            return ToolOutcome(msgspec.to_builtins(result))
        except TypeError as error:
            return ToolOutcome(
                error=StepError(
                    type="invalid_result",
                    message=f"tool {name!r} returned a value that is not JSON: {error}",
                )
            )
