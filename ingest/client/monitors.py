"""Monitors in the SDK: what an append's answer says of them, and applying definitions.

An append of a decision answers, beside its receipt, the state of every monitor the
decision counted toward (`monitors`, one `MonitorReading` per monitor and group: the value
with this decision in the window, the limit, whether the group is over it, and the log
index of the breach record when this decision crossed). `AppendResult` is the receipt with
those readings always a list, and `stop`: true when a `flag` monitor stands over its limit,
the signal to stop before the next decision. A client made with `raise_on_flag=True` (or
a call given it) raises `MonitorBreached` instead of returning such a result; the record
is stored by then, and the exception carries the result (`error.result`).

The readings are not part of the signed receipt body: they are the ledger's answer at the
moment of sequencing, and what the ledger commits to is the breach record in the log.

`monitors_body` turns what `Client.apply_monitors` is given (a `monitors.toml` text, a
decoded mapping, or definitions) into the body of `POST /v1/monitors`; the server checks
each definition and answers the `monitor-invalid` problem with the member at fault.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from ingest.client._flows import JSON, Flow, Request, exchange, response_problem
from ingest.client._results import AppendResult, flagged, monitor_breached, raise_if_flagged
from ingest.client.errors import UnexpectedResponse
from ledger.backoff import Attempts
from ledger.errors import MonitorBreached, MonitorInvalid
from ledger.records.monitor import MonitorDefinition, MonitorReading

__all__ = [
    "AppendResult",
    "MonitorBreached",
    "MonitorDefinition",
    "MonitorReading",
    "apply_monitors_flow",
    "flagged",
    "monitor_breached",
    "monitors_body",
    "raise_if_flagged",
]


def monitors_body(
    definitions: str | Mapping[str, Any] | Sequence[MonitorDefinition | Mapping[str, Any]],
) -> bytes:
    """The JSON body of `POST /v1/monitors`: TOML text with `[[monitor]]` tables, a mapping
    with a `monitor` list, or a sequence of definitions."""
    data: Any
    if isinstance(definitions, str):
        try:
            data = tomllib.loads(definitions)
        except tomllib.TOMLDecodeError as error:
            raise MonitorInvalid(f"not TOML: {error}") from None
    elif isinstance(definitions, Mapping):
        data = dict(definitions)
    else:
        data = {"monitor": list(definitions)}
    return msgspec.json.encode(data)


def apply_monitors_flow(body: bytes, attempts: Attempts) -> Flow[list[dict[str, Any]]]:
    """`POST /v1/monitors`; one answer per monitor (monitor, tenant, version, digest,
    status, and index when applied). Applying is idempotent, so a retry is safe."""
    response = yield from exchange(Request("POST", "/v1/monitors", body, JSON), attempts)
    if response.status != 200:
        raise response_problem(response)
    try:
        answer = msgspec.json.decode(response.body)
        monitors = answer["monitors"]
    except (msgspec.DecodeError, TypeError, KeyError) as error:
        raise UnexpectedResponse(f"the monitors answer does not parse: {error}") from None
    if not isinstance(monitors, list):
        raise UnexpectedResponse("the monitors answer holds no list")
    return monitors
