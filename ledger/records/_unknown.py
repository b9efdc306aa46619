"""Keep the JSON members a schema does not know, so records survive a round trip.

A typed msgspec decode drops members its Structs do not declare. To keep them, the same
bytes are also decoded generically and walked alongside the typed result: every JSON object
that became a Struct hands its undeclared members to that Struct's instance dictionary
(Structs must be declared with ``dict=True``). Encoding reverses the walk and puts them
back next to the declared members.

Structs may nest directly, inside Optionals and unions, and inside lists. Free-form members
typed ``Any`` need none of this: they are plain JSON values and survive by nature. The
captured members belong to the instance: copies made with ``msgspec.structs.replace`` or
built anew do not carry them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, NamedTuple

import msgspec
from msgspec import inspect

# Where a Struct keeps its captured members, in its instance dictionary; being a dunder name,
# it cannot clash with a field.
_KEY = "__unrecognized__"

# Until something is captured in this process no Struct can carry unrecognized members, so
# encoders can skip the walk; that keeps encoding as fast as plain msgspec in the usual case.
_captured_any = False


class _Plan(NamedTuple):
    known: frozenset[str]  # the JSON member names the Struct type declares
    nested: tuple[tuple[str, str], ...]  # (attribute, JSON name) of fields that hold Structs


@functools.cache
def _plan(cls: type[msgspec.Struct]) -> _Plan:
    info = inspect.type_info(cls)
    assert isinstance(info, inspect.StructType)
    known = {field.encode_name for field in info.fields}
    if info.tag_field is not None:
        known.add(info.tag_field)
    nested = tuple(
        (field.name, field.encode_name) for field in info.fields if _holds_struct(field.type)
    )
    return _Plan(frozenset(known), nested)


def _holds_struct(t: inspect.Type) -> bool:
    match t:
        case inspect.StructType():
            return True
        case inspect.ListType(item_type=item):
            return _holds_struct(item)
        case inspect.UnionType(types=members):
            return any(_holds_struct(member) for member in members)
    return False


def _children(obj: msgspec.Struct) -> Iterator[tuple[str, int | None, msgspec.Struct]]:
    """Yield (JSON name, list index or None, child) for every Struct directly under `obj`."""
    for attr, key in _plan(type(obj)).nested:
        value = getattr(obj, attr)
        if isinstance(value, msgspec.Struct):
            yield key, None, value
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, msgspec.Struct):
                    yield key, index, item


def _paired(
    obj: msgspec.Struct, doc: dict[str, Any]
) -> Iterator[tuple[msgspec.Struct, dict[str, Any]]]:
    """Yield every Struct directly under `obj` with the JSON object at its place in `doc`."""
    for key, index, child in _children(obj):
        member = doc.get(key)
        if index is not None:
            member = member[index] if isinstance(member, list) and index < len(member) else None
        if isinstance(member, dict):
            yield child, member


def capture(obj: msgspec.Struct, doc: Any) -> None:
    """Attach to `obj`, and to every Struct under it, the members of `doc` it does not declare.

    `doc` is the generic decode of the bytes `obj` was decoded from.
    """
    if not isinstance(doc, dict):
        return
    known = _plan(type(obj)).known
    extra = {key: value for key, value in doc.items() if key not in known}
    if extra:
        global _captured_any  # noqa: PLW0603 -- a process-wide fast-path switch, set once
        _captured_any = True
        obj.__dict__[_KEY] = extra
    for child, child_doc in _paired(obj, doc):
        capture(child, child_doc)


def unrecognized(obj: msgspec.Struct) -> dict[str, Any]:
    """The members captured for `obj` alone (not its children); empty if none."""
    found: dict[str, Any] = obj.__dict__.get(_KEY, {})
    return found


def has_unrecognized(obj: msgspec.Struct) -> bool:
    """Whether `obj` or any Struct under it carries captured members."""
    return _captured_any and (
        _KEY in obj.__dict__ or any(has_unrecognized(child) for _, _, child in _children(obj))
    )


def to_builtins(obj: msgspec.Struct) -> Any:
    """`msgspec.to_builtins(obj)` with every captured member put back in its place."""
    doc = msgspec.to_builtins(obj)
    _restore(obj, doc)
    return doc


def _restore(obj: msgspec.Struct, doc: dict[str, Any]) -> None:
    doc.update(unrecognized(obj))
    for child, child_doc in _paired(obj, doc):
        _restore(child, child_doc)
