"""The requests erasure and its rules take, checked the same way from HTTP and the CLI.

Each is a msgspec Struct with the bounds of the record it leads to; `parse` decodes a JSON
body (or converts the CLI's arguments) against one, and a member out of bounds, missing or
unknown is an `ErasureRequestInvalid` naming it by JSON pointer (HTTP 422).
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from ledger.errors import ErasureRequestInvalid
from ledger.records._pointer import explain
from ledger.records.decision import Label
from ledger.records.erasure import Days, HoldFilter, Reason, RequestId

_T = TypeVar("_T")


class EraseRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/erasures`: erase every blob of a subject."""

    subject: Label
    reason: Reason
    request_id: RequestId | None = None  # chosen for idempotent retries; generated if absent
    queue: bool = False  # inside the floor or under a hold: queue rather than refuse


class RetentionRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`PUT /v1/retention`: the tenant's retention rule."""

    floor_days: Days
    expire_after_days: Days | None = None
    reason: Reason | None = None


class HoldRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/holds`: a legal hold on a subject, or on the decisions a filter selects."""

    subject: Label | None = None
    filter: HoldFilter | None = None
    reason: Reason
    hold_id: RequestId | None = None


class ReleaseRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: Reason | None = None


class Asker(msgspec.Struct, kw_only=True):
    """Who asks and why, as the records name them."""

    requested_by: Label
    reason: Reason | None = None


def parse(kind: type[_T], data: Any) -> _T:
    """`data` (JSON bytes, or the values already parsed) as a `kind`; the member at fault
    named by pointer."""
    try:
        if isinstance(data, bytes | bytearray | memoryview):
            return msgspec.json.decode(data, type=kind)
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as error:
        detail, pointer = explain(error)
        raise ErasureRequestInvalid(detail, pointer=pointer or None) from None
    except msgspec.DecodeError as error:
        raise ErasureRequestInvalid(f"the body is not JSON: {error}") from None


def check_asker(requested_by: str, reason: str | None) -> None:
    parse(Asker, {"requested_by": requested_by, "reason": reason})
