"""Plain Python values as OTLP attributes: the inverse of `ingest.otlp.decode.any_value`.

The receiver only reads OTLP; this is for what builds spans by hand (the benchmarks'
load, the tests' traces). A dict is a ``kvlist`` and a list an ``array``, so that
`decode.any_value` gives back exactly what went in; a value that should arrive as JSON
text (as instrumentations send messages) is passed as a string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

_SCALARS: tuple[tuple[type, str], ...] = (
    (bool, "bool_value"),
    (int, "int_value"),
    (float, "double_value"),
    (bytes, "bytes_value"),
    (str, "string_value"),
)


def any_value_of(value: Any) -> AnyValue:
    """`value` (None, bool, int, float, str, bytes, list or dict) as an OTLP AnyValue."""
    if value is None:
        return AnyValue()
    # bool before int: a bool is an int to isinstance.
    wrapped = AnyValue()
    for kind, member in _SCALARS:
        if isinstance(value, kind):
            setattr(wrapped, member, value)
            return wrapped
    if isinstance(value, list | tuple):
        wrapped.array_value.values.extend(any_value_of(item) for item in value)
        return wrapped
    if isinstance(value, Mapping):
        wrapped.kvlist_value.values.extend(attributes_of(value))
        return wrapped
    return AnyValue(string_value=str(value))


def attributes_of(values: Mapping[str, Any]) -> list[KeyValue]:
    """A mapping of attribute names to values as OTLP key-values, in order."""
    return [KeyValue(key=key, value=any_value_of(value)) for key, value in values.items()]
