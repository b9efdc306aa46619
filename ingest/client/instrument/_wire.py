"""Provider objects as JSON: what a call sent and what came back, read without the SDKs.

The instrumentation must work with the `openai` and `anthropic` packages installed or not
(the base install has neither), so nothing here imports them: their request parameters
and response models are read by duck typing. A pydantic model is dumped as the provider
SDKs put it on the wire (``exclude_unset``, so a response reads as the JSON that arrived
and a message taken from a response reads as it is sent back); the SDKs' "not given"
sentinels are left out, as the SDKs leave them out of the body.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import msgspec

from ingest.calls import ToolOffered
from ingest.calls.values import obj, text

# Keyword arguments of a `create` call that are not part of the request body.
TRANSPORT_OPTIONS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})
# The SDKs' markers for an argument that was not given (`openai.NOT_GIVEN`, `omit`).
_SENTINELS = frozenset({"NotGiven", "Omit"})
_json = msgspec.json.Decoder()


def is_sentinel(value: Any) -> bool:
    return type(value).__name__ in _SENTINELS


def jsonable(value: Any) -> Any:
    """`value` as plain JSON types, as a provider SDK would send or has received it."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items() if not is_sentinel(v)}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value if not is_sentinel(item)]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        # As the SDKs transform a model in a request (`_transform`: exclude_unset, JSON mode).
        exclude = getattr(value, "__api_exclude__", None)
        return jsonable(dump(mode="json", exclude_unset=True, by_alias=True, exclude=exclude))
    return _leaf(value)


def _leaf(value: Any) -> Any:
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    # Anything else cannot be sent as JSON either; keep a readable trace of it.
    return repr(value)


def request_body(
    kwargs: Mapping[str, Any], *, drop: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The request a `create(**kwargs)` call sends: its body parameters, with
    ``extra_body`` merged in as the SDKs merge it."""
    body = {
        name: jsonable(value)
        for name, value in kwargs.items()
        if name not in TRANSPORT_OPTIONS and name not in drop and not is_sentinel(value)
    }
    extra = kwargs.get("extra_body")
    if isinstance(extra, Mapping):
        body.update(jsonable(extra))
    return body


def as_dict(value: Any) -> dict[str, Any]:
    """A response or a stream event as the JSON object it arrived as."""
    data = jsonable(value)
    return data if isinstance(data, dict) else {"value": data}


def materialized(kwargs: dict[str, Any], *names: str) -> dict[str, Any]:
    """`kwargs` with the iterables under `names` turned into lists, so that recording them
    does not consume what the SDK is about to send (a generator of messages, say)."""
    fixed = dict(kwargs)
    for name in names:
        value = fixed.get(name)
        if value is not None and not isinstance(value, str | bytes | Mapping | list | tuple):
            # Not iterable: the SDK will say what is wrong with it.
            with contextlib.suppress(TypeError):
                fixed[name] = list(value)
    return fixed


# Reading members of JSON objects whose shape the provider decides: `ingest.calls.values`.


def items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def arguments_of(raw: Any) -> dict[str, Any]:
    """A tool call's arguments as an object: OpenAI sends them as a JSON string."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            decoded = _json.decode(raw or "{}")
        except msgspec.DecodeError:
            decoded = None
        if isinstance(decoded, dict):
            return decoded
        # Not an object (a model can emit broken JSON): keep what it said.
        return {"_unparsed": raw}
    return {}


def offered_tools(raw: Any, *, schema: str, inside: str | None = None) -> tuple[ToolOffered, ...]:
    """The tools a request offers (its ``tools`` list): each one's name, description and
    JSON Schema (the member `schema`), read from the tool object or, when the provider nests
    it, from its member `inside`. A tool without a name (a provider's built-in one) is left
    out: a replay cannot offer it again."""
    offered = []
    for item in items(raw):
        tool = obj(item) if inside is None else obj(obj(item).get(inside))
        name = text(tool.get("name"))
        if name is None:
            continue
        parameters = tool.get(schema)
        offered.append(
            ToolOffered(
                name=name,
                description=text(tool.get("description")),
                parameters=parameters if isinstance(parameters, dict) else None,
            )
        )
    return tuple(offered)
