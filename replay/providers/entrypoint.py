"""Versioned decision functions called in-process: a ``module:function`` entry point.

Not every decision comes from a language model: a rules engine or a scoring function can
decide too, and replaying it under another version is the same question ("what would v2
have decided?"). The function takes the decision's inputs (a dict, passed as a deep copy
so it cannot alter the recorded inputs) and returns its decision as a dict. The result is
put in the common response shape: `decision` holds the dict and `text` its canonical JSON
(sorted keys, no spaces), so the diff can compare it like any structured model output.

`model_version` is the entry point that ran, and `fingerprint` the SHA-256 of the
function's source where Python can find it, so a replay shows when the code behind an
unchanged name changed. Token counts are 0.

A synchronous function runs in a worker thread so a slow rule cannot stall the event
loop; the per-call timeout then returns control to the caller, but Python cannot stop the
thread, which finishes on its own. Coroutine functions are awaited directly. Failures of
the function are `EntryPointError` and are never retried: the same inputs would fail the
same way.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import importlib
import inspect
from collections.abc import Callable
from typing import Any

import msgspec

from replay.providers._http import Stopwatch
from replay.providers.errors import EntryPointError
from replay.providers.types import ChatRequest, ChatResponse

DecisionFunction = Callable[[dict[str, Any]], Any]


def _source_digest(function: DecisionFunction) -> str | None:
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return None
    return "sha256:" + hashlib.sha256(source.encode()).hexdigest()


class EntryPointProvider:
    kind = "python"

    def __init__(self, name: str) -> None:
        self.name = name
        self._loaded: dict[str, tuple[DecisionFunction, str | None]] = {}

    def load(self, target: str) -> DecisionFunction:
        """Import ``package.module:function`` (the attribute may be dotted, as in
        ``module:Class.method``); cached after the first load."""
        return self._resolve(target)[0]

    def _resolve(self, target: str) -> tuple[DecisionFunction, str | None]:
        cached = self._loaded.get(target)
        if cached is not None:
            return cached
        module_name, colon, attribute = target.partition(":")
        if not colon or not module_name or not attribute:
            raise EntryPointError(self.name, f"entry point {target!r} is not 'module:function'")
        try:
            found: Any = importlib.import_module(module_name)
        except ImportError as error:
            raise EntryPointError(
                self.name, f"cannot import {module_name!r} for {target!r}: {error}"
            ) from error
        for part in attribute.split("."):
            try:
                found = getattr(found, part)
            except AttributeError:
                raise EntryPointError(
                    self.name, f"{module_name!r} has no attribute {attribute!r}"
                ) from None
        if not callable(found):
            raise EntryPointError(self.name, f"{target!r} is not callable")
        entry = (found, _source_digest(found))
        self._loaded[target] = entry
        return entry

    async def send(self, request: ChatRequest, *, model: str, stream: bool = False) -> ChatResponse:
        """Call the function at `model` (the registry's resolved entry point) with the
        request's inputs. `stream` has no meaning here and is ignored."""
        function, fingerprint = self._resolve(model)
        inputs = copy.deepcopy(request.inputs)
        clock = Stopwatch()
        try:
            if inspect.iscoroutinefunction(function):
                result = await function(inputs)
            else:
                result = await asyncio.to_thread(function, inputs)
        except Exception as error:  # the function is foreign code: any failure is its own
            raise EntryPointError(
                self.name, f"{model} raised {type(error).__name__}: {error}"
            ) from error
        latency_ms = clock.elapsed_ms()
        if not isinstance(result, dict):
            raise EntryPointError(
                self.name, f"{model} returned {type(result).__name__}, not a dict decision"
            )
        try:
            text = msgspec.json.encode(result, order="sorted").decode()
        except (TypeError, msgspec.EncodeError) as error:
            raise EntryPointError(
                self.name, f"{model} returned a decision that is not JSON: {error}"
            ) from error
        return ChatResponse(
            text=text,
            finish_reason="stop",
            provider=self.name,
            model_version=model,
            fingerprint=fingerprint,
            latency_ms=latency_ms,
            decision=result,
        )
