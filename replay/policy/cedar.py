"""The Cedar engine: a registered Cedar policy set evaluated through `cedarpy`.

A decision becomes one Cedar request:

- the action is the one the policy's schema declares (its `entry_point` names it when the
  schema declares several);
- the principal is an entity of the action's first principal type, whose id is the
  deciding service (``tenant/service``), and the resource one of its first resource type,
  whose id is the decision's id;
- the context is the recorded policy inputs, typed by the action's context in the schema:
  each declared attribute is taken from the inputs and converted to Cedar's JSON form
  (``decimal`` from a decimal string or number with at most four places, ``Long`` from an
  integer, sets, records, entity references), and inputs the schema does not declare are
  left out. An input that is missing or of another type is `PolicyInputsInvalid`, naming
  it (``/inputs/credit_score``), before Cedar is called.

The result is ``allow`` or ``deny``; the reasons are the ``@id`` annotations (or, without
one, Cedar's ``policyN`` ids) of the ``forbid`` policies the request satisfied, in document
order: what denied it. An allow has none. A policy that errs on the request (an overflow,
a missing attribute) makes the evaluation fail rather than be silently skipped, as Cedar
alone would do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

import cedarpy

from ledger.errors import ProvError
from ledger.records.policy import PolicyOutcome, cedar_actions
from replay.policy.errors import PolicyEvaluationFailed, PolicyInputsInvalid

# (value, pointer) -> the value in Cedar's JSON form.
Convert = Callable[[Any, str], Any]

_LONG = (-(1 << 63), (1 << 63) - 1)
_DECIMAL = (Decimal("-922337203685477.5808"), Decimal("922337203685477.5807"))
_FOUR_PLACES = Decimal("0.0001")
_POSITION = re.compile(r"^policy(\d+)$")
_EXTENSIONS = {"decimal": "decimal", "ipaddr": "ip", "datetime": "datetime", "duration": "duration"}


def _invalid(pointer: str, value: Any, expected: str) -> PolicyInputsInvalid:
    shown = json.dumps(value, default=str)
    shown = shown if len(shown) <= 60 else shown[:59] + "…"
    return PolicyInputsInvalid(
        f"input {pointer} is {shown}, not {expected} as the policy's schema declares",
        pointer=pointer,
    )


def _long(value: Any, pointer: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(pointer, value, "an integer (Long)")
    if not _LONG[0] <= value <= _LONG[1]:
        raise _invalid(pointer, value, "a 64-bit integer (Long)")
    return value


def _string(value: Any, pointer: str) -> str:
    if not isinstance(value, str):
        raise _invalid(pointer, value, "a string")
    return value


def _boolean(value: Any, pointer: str) -> bool:
    if not isinstance(value, bool):
        raise _invalid(pointer, value, "a boolean")
    return value


def _decimal(value: Any, pointer: str) -> dict[str, Any]:
    expected = "a decimal with at most 4 places"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _invalid(pointer, value, expected)
    try:
        number = Decimal(str(value))
        with localcontext(prec=40):
            exact = number.is_finite() and number.quantize(_FOUR_PLACES) == number
    except (InvalidOperation, ValueError):
        raise _invalid(pointer, value, expected) from None
    if not exact or not _DECIMAL[0] <= number <= _DECIMAL[1]:
        raise _invalid(pointer, value, expected)
    return {"__extn": {"fn": "decimal", "arg": f"{number.quantize(_FOUR_PLACES):f}"}}


def _extension(name: str) -> Convert:
    function = _EXTENSIONS[name]

    def convert(value: Any, pointer: str) -> dict[str, Any]:
        return {"__extn": {"fn": function, "arg": _string(value, pointer)}}

    return convert


def _entity(type_name: str) -> Convert:
    def convert(value: Any, pointer: str) -> dict[str, Any]:
        return {"__entity": {"type": type_name, "id": _string(value, pointer)}}

    return convert


def _set(element: Convert) -> Convert:
    def convert(value: Any, pointer: str) -> list[Any]:
        if not isinstance(value, list):
            raise _invalid(pointer, value, "a list (Set)")
        return [element(item, f"{pointer}/{position}") for position, item in enumerate(value)]

    return convert


def _record(attributes: Mapping[str, tuple[Convert, bool]]) -> Convert:
    def convert(value: Any, pointer: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _invalid(pointer, value, "an object (Record)")
        converted = {}
        for name, (inner, required) in attributes.items():
            if name in value:
                converted[name] = inner(value[name], f"{pointer}/{name}")
            elif required:
                raise PolicyInputsInvalid(
                    f"input {pointer}/{name} is missing; the policy's schema requires it",
                    pointer=f"{pointer}/{name}",
                )
        return converted

    return convert


_SIMPLE: dict[Any, Convert] = {"Long": _long, "String": _string, "Boolean": _boolean}


class _Types:
    """Converters for the types of one namespace of a Cedar JSON schema."""

    def __init__(self, schema: Mapping[str, Any], namespace: str) -> None:
        body = schema.get(namespace) or {}
        self._prefix = f"{namespace}::" if namespace else ""
        self._common: Mapping[str, Any] = body.get("commonTypes") or {}
        self._entities: Mapping[str, Any] = body.get("entityTypes") or {}

    def qualified(self, name: str) -> str:
        return name if "::" in name else self._prefix + name

    def converter(self, spec: Mapping[str, Any]) -> Convert:
        kind = spec.get("type")
        name = spec.get("name")
        if kind in _SIMPLE:
            return _SIMPLE[kind]
        if kind == "Extension" and name in _EXTENSIONS:
            return _decimal if name == "decimal" else _extension(name)
        compound: dict[Any, Callable[[], Convert]] = {
            "Set": lambda: _set(self.converter(spec["element"])),
            "Record": lambda: _record(
                {
                    member: (self.converter(attribute), attribute.get("required", True))
                    for member, attribute in (spec.get("attributes") or {}).items()
                }
            ),
            "Entity": lambda: _entity(self.qualified(name or "")),
            "EntityOrCommon": lambda: self._named(name or ""),
        }
        build = compound.get(kind)
        if build is None and isinstance(kind, str) and kind in self._common:
            common: str = kind
            build = lambda: self._named(common)  # noqa: E731 - one more entry of the table
        if build is None:
            raise PolicyEvaluationFailed(f"cedar: the schema's type {spec!r} is not supported")
        return build()

    def _named(self, name: str) -> Convert:
        if name in self._common:
            return self.converter(self._common[name])
        if name in _SIMPLE:
            return _SIMPLE[name]
        return _entity(self.qualified(name))


class CedarPolicy:
    """A registered Cedar policy, parsed once and evaluated many times."""

    engine = "cedar"

    def __init__(
        self, document: str, schema: Mapping[str, Any], entry_point: str | None = None
    ) -> None:
        try:
            self._policies = cedarpy.PolicySet.from_str(document)
            self._schema = cedarpy.Schema.from_json_str(json.dumps(schema))
        except ValueError as error:
            raise PolicyEvaluationFailed(f"cedar: the policy does not load: {error}") from None
        actions = cedar_actions(dict(schema))
        if entry_point is None and len(actions) == 1:
            entry_point = next(iter(actions))
        if entry_point not in actions:
            raise PolicyEvaluationFailed(f"cedar: the schema declares no action {entry_point!r}")
        self.action = entry_point
        namespace = entry_point.rpartition("Action::")[0].removesuffix("::")
        types = _Types(schema, namespace)
        applies = actions[entry_point]
        self._principal_type = types.qualified(applies.get("principalTypes", ["Principal"])[0])
        self._resource_type = types.qualified(applies.get("resourceTypes", ["Resource"])[0])
        context = applies.get("context") or {"type": "Record", "attributes": {}}
        self._context = types.converter(context)
        self._entities = cedarpy.Entities.from_json_str("[]")

    def request(self, inputs: Mapping[str, Any], principal: str, resource: str) -> dict[str, Any]:
        """The Cedar request for one evaluation; `PolicyInputsInvalid` names a bad input."""
        return {
            "principal": {"type": self._principal_type, "id": principal},
            "action": self.action,
            "resource": {"type": self._resource_type, "id": resource},
            "context": self._context(dict(inputs), "/inputs"),
        }

    def evaluate(self, inputs: Mapping[str, Any], principal: str, resource: str) -> PolicyOutcome:
        [outcome] = self.evaluate_many([self.request(inputs, principal, resource)])
        return outcome

    def evaluate_many(self, requests: Sequence[dict[str, Any]]) -> list[PolicyOutcome]:
        """Many requests (`request`) in one call into the engine."""
        answers = cedarpy.is_authorized_batch(
            list(requests), self._policies, self._entities, self._schema
        )
        return [self.outcome(answer) for answer in answers]

    def evaluate_each(
        self, items: Sequence[tuple[dict[str, Any], str, str]]
    ) -> list[PolicyOutcome | ProvError]:
        """`evaluate` for each item, all in one call into the engine: each outcome, or the
        error it ended in (inputs the schema refuses are never sent)."""
        outcomes: list[PolicyOutcome | ProvError | None] = []
        requests: list[dict[str, Any]] = []
        for inputs, principal, resource in items:
            try:
                requests.append(self.request(inputs, principal, resource))
                outcomes.append(None)  # sent: its answer takes this place
            except PolicyInputsInvalid as error:
                outcomes.append(error)
        answers = iter(
            cedarpy.is_authorized_batch(requests, self._policies, self._entities, self._schema)
            if requests
            else []
        )
        return [_answer(next(answers)) if o is None else o for o in outcomes]

    @staticmethod
    def outcome(answer: cedarpy.AuthzResult) -> PolicyOutcome:
        """The result and reasons of one of Cedar's answers; `PolicyEvaluationFailed` when
        a policy erred on the request or Cedar gave no decision."""
        diagnostics = answer.diagnostics
        if diagnostics.errors or answer.decision == cedarpy.Decision.NoDecision:
            detail = "; ".join(str(error) for error in diagnostics.errors) or "no decision"
            raise PolicyEvaluationFailed(f"cedar: {detail}")
        if answer.allowed:
            return PolicyOutcome(result="allow", reasons=[])
        named = diagnostics.id_annotations_by_reason
        ordered = sorted(diagnostics.reasons, key=_document_order)
        return PolicyOutcome(result="deny", reasons=[named.get(ref, ref) for ref in ordered])


def _answer(answer: cedarpy.AuthzResult) -> PolicyOutcome | ProvError:
    try:
        return CedarPolicy.outcome(answer)
    except PolicyEvaluationFailed as error:
        return error


def _document_order(policy_ref: str) -> tuple[int, str]:
    """Cedar numbers the policies of a document ``policy0``, ``policy1``… in order."""
    position = _POSITION.match(policy_ref)
    return (int(position.group(1)) if position else 1 << 62, policy_ref)
