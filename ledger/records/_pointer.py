"""RFC 6901 JSON pointers for msgspec validation errors, so every error names its field."""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec

from ledger.errors import InvalidPayload

_T = TypeVar("_T")

_PATH_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_NAMED_MEMBER = re.compile(
    r"^(?:Object missing required field |Object contains unknown field )?`([^`]+)`"
)


def explain(error: Exception) -> tuple[str, str]:
    """Split a msgspec message into a detail line and an RFC 6901 pointer.

    ``Expected `int`, got `str` - at `$.steps[3].usage.input_tokens``` becomes
    ``/steps/3/usage/input_tokens``; a missing or cross-checked member is appended.
    """
    detail, _, path = str(error).partition(" - at `$")
    segments = [name or index for name, index in _PATH_SEGMENT.findall(path.rstrip("`"))]
    if named := _NAMED_MEMBER.match(detail):
        segments.append(named.group(1))
    pointer = "".join("/" + s.replace("~", "~0").replace("/", "~1") for s in segments)
    return detail, pointer


def decode_payload(decoder: msgspec.json.Decoder[_T], data: bytes) -> _T:
    """Decode and check a record payload; `InvalidPayload` names the member at fault, or
    carries no pointer when the bytes are not JSON at all."""
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as error:
        detail, pointer = explain(error)
        raise InvalidPayload(detail, pointer=pointer) from error
    except msgspec.DecodeError as error:
        raise InvalidPayload(f"not valid JSON: {error}") from error
