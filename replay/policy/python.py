"""The Python engine: a registered ``module:function`` policy, called in-process.

The function is loaded as replay's entry-point provider loads a decision function
(`replay.providers.entrypoint`), with three more rules, because a policy record is written
by a tenant and evaluated by the server:

- its document is the source file of the module that holds the function, and the module
  the server imports must be exactly those bytes (the SHA-256 is the record's `digest`);
  otherwise the evaluation fails, naming both digests, rather than run other code under a
  registered name;
- the function must be marked with `policy_function`, so that a record can never make the
  server call an arbitrary importable function;
- when the record has a JSON Schema, the inputs are validated against it first, and the
  first error is `PolicyInputsInvalid`, naming the input (``/inputs/...``).

The function takes the recorded policy inputs (a deep copy) and returns a dict: `result`
(a string, or a boolean meaning ``allow`` or ``deny``) or `approved` (a boolean), and
`reasons` (a list of strings, default none).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ledger.errors import ProvError
from ledger.records.policy import PolicyOutcome, document_digest
from replay.policy.errors import PolicyEvaluationFailed, PolicyInputsInvalid
from replay.providers.entrypoint import EntryPointProvider
from replay.providers.errors import EntryPointError

_F = TypeVar("_F", bound=Callable[..., Any])
_MARK = "__prov_policy__"
_loader = EntryPointProvider("python-policy")


def policy_function(function: _F) -> _F:
    """Mark `function` as one a registered Python policy may name."""
    setattr(function, _MARK, True)
    return function


class PythonPolicy:
    """A registered Python policy: its function, checked against the registered source."""

    engine = "python"

    def __init__(self, digest: str, schema: Mapping[str, Any] | None, entry_point: str) -> None:
        try:
            self._function = _loader.load(entry_point)
        except EntryPointError as error:
            raise PolicyEvaluationFailed(f"python: {error.detail}") from None
        module = sys.modules[entry_point.partition(":")[0]]
        source = Path(module.__file__ or "").read_bytes() if module.__file__ else b""
        if document_digest(source) != digest:
            raise PolicyEvaluationFailed(
                f"python: the module behind {entry_point} hashes to "
                f"{document_digest(source)}, not the registered {digest}"
            )
        if not getattr(self._function, _MARK, False):
            raise PolicyEvaluationFailed(
                f"python: {entry_point} is not marked with replay.policy.python.policy_function"
            )
        self.entry_point = entry_point
        self._validator = None if schema is None else _validator(schema)

    def evaluate(self, inputs: Mapping[str, Any], principal: str, resource: str) -> PolicyOutcome:
        """Call the function on a copy of `inputs`; who asks and about what are not its
        concern (`principal` and `resource` are for engines that model them)."""
        if self._validator is not None:
            error = next(iter(self._validator.iter_errors(dict(inputs))), None)
            if error is not None:
                pointer = "/inputs" + "".join(f"/{part}" for part in error.absolute_path)
                raise PolicyInputsInvalid(
                    f"input {pointer}: {error.message}, as the policy's schema declares",
                    pointer=pointer,
                )
        try:
            answer = self._function(copy.deepcopy(dict(inputs)))
        except Exception as error:  # the function is foreign code: any failure is its own
            raise PolicyEvaluationFailed(
                f"python: {self.entry_point} raised {type(error).__name__}: {error}"
            ) from error
        return _outcome(self.entry_point, answer)

    def evaluate_each(
        self, items: Sequence[tuple[dict[str, Any], str, str]]
    ) -> list[PolicyOutcome | ProvError]:
        """`evaluate` for each item: its outcome, or the error it ended in."""
        outcomes: list[PolicyOutcome | ProvError] = []
        for inputs, principal, resource in items:
            try:
                outcomes.append(self.evaluate(inputs, principal, resource))
            except (PolicyInputsInvalid, PolicyEvaluationFailed) as error:
                outcomes.append(error)
        return outcomes


def _validator(schema: Mapping[str, Any]) -> Any:
    from jsonschema import validators  # noqa: PLC0415 - loaded with the first such policy

    return validators.validator_for(schema)(dict(schema))


def _outcome(entry_point: str, answer: Any) -> PolicyOutcome:
    if isinstance(answer, dict):
        result = answer.get("result", answer.get("approved"))
        reasons = answer.get("reasons", [])
        if isinstance(result, bool):
            result = "allow" if result else "deny"
        if (
            isinstance(result, str)
            and result
            and isinstance(reasons, list)
            and all(isinstance(reason, str) for reason in reasons)
        ):
            return PolicyOutcome(result=result, reasons=list(reasons))
    raise PolicyEvaluationFailed(
        f"python: {entry_point} returned {type(answer).__name__}, not a dict with a `result` "
        "(or `approved`) and a list of string `reasons`"
    )
