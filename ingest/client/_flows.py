"""What a call does over HTTP, written once for the sync and the async client.

Each flow is a generator that yields actions (send this `Request`, `Sleep` this long) and is
sent back what happened (a `Response`, or `Unreachable` when the network failed). The
clients only run the actions with their own I/O, `httpx.Client` and `time.sleep` or
`httpx.AsyncClient` and `asyncio.sleep`, so the retry loop, the status handling and the
receipt checks exist once. Retrying resends the same `Request` object, whose body is the
record's signed bytes, so a retry can never change what is sent.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import httpx

from ingest.client._receipts import (
    BatchItemResult,
    check_receipt,
    parse_batch,
    parse_log_verifier,
    settle_item,
)
from ingest.client._records import SignedRecord, batch_body
from ingest.client._results import AppendResult
from ingest.client.errors import ConnectionFailed, ProblemError, parse_problem
from ledger.backoff import Attempts, parse_retry_after, retryable_status
from ledger.log.note import NoteVerifier

T = TypeVar("T")
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    body: bytes | None = None
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    headers: Mapping[str, str]  # httpx.Headers: case-insensitive
    body: bytes


@dataclass(frozen=True, slots=True)
class Unreachable:
    """The request got no HTTP answer; `retryable` when trying again could help."""

    error: Exception
    retryable: bool


Action = Request | Sleep
Reply = Response | Unreachable | None  # None answers a Sleep
Flow = Generator[Action, Reply, T]

# Failures a retry can cure. Others (an unsupported URL scheme, a bad proxy setting) cannot.
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def unreachable(error: httpx.TransportError) -> Unreachable:
    return Unreachable(error, isinstance(error, _TRANSIENT))


def request_headers(request: Request) -> dict[str, str]:
    headers = dict(request.headers)
    if request.content_type:
        headers["Content-Type"] = request.content_type
    return headers


def run_blocking(http: httpx.Client, flow: Flow[T]) -> T:
    """Drive `flow` to its result over a blocking HTTP client: the one I/O loop of the
    synchronous client and of the offline receipt check."""
    reply: Response | Unreachable | None = None
    while True:
        try:
            action = flow.send(reply)
        except StopIteration as done:
            result: T = done.value
            return result
        if isinstance(action, Sleep):
            time.sleep(action.seconds)
            reply = None
            continue
        try:
            answer = http.request(
                action.method, action.path, content=action.body, headers=request_headers(action)
            )
        except httpx.TransportError as error:
            reply = unreachable(error)
            continue
        reply = Response(answer.status_code, answer.reason_phrase, answer.headers, answer.content)


def response_problem(response: Response) -> ProblemError:
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    return parse_problem(response.status, response.reason, response.body, retry_after)


def exchange(request: Request, attempts: Attempts) -> Flow[Response]:
    """Send `request` until it gets an answer that is not worth retrying, and return it.

    Retries 429 (after `Retry-After` when given), transient 5xx and network failures while
    `attempts` lasts; then raises the last `ProblemError`, or `ConnectionFailed`.
    """
    while True:
        reply = yield request
        if isinstance(reply, Unreachable):
            delay = attempts.next_delay() if reply.retryable else None
            if delay is None:
                raise ConnectionFailed(
                    f"{request.method} {request.path}: {type(reply.error).__name__}: "
                    f"{reply.error} (after {attempts.used} retries)"
                ) from reply.error
        elif reply is not None and retryable_status(reply.status):
            problem = response_problem(reply)
            delay = attempts.next_delay(problem.retry_after)
            if delay is None:
                raise problem
        elif reply is not None:
            return reply
        else:
            raise RuntimeError("a request was answered with nothing")  # a driver bug
        yield Sleep(delay)


def append_flow(
    record: SignedRecord, verifier: NoteVerifier, attempts: Attempts
) -> Flow[AppendResult]:
    """`POST /v1/records` with one record; its verified receipt."""
    response = yield from exchange(Request("POST", "/v1/records", record.envelope, JSON), attempts)
    if response.status not in (200, 201):
        raise response_problem(response)
    return check_receipt(response.body, verifier, record)


def batch_flow(
    records: Sequence[SignedRecord], verifier: NoteVerifier, attempts: Attempts
) -> Flow[list[BatchItemResult]]:
    """`POST /v1/records/batch`; one verified receipt or error per record, in order.

    Items answered 429 or 5xx on their own are sent again, alone, while the retry budget
    lasts; the others are final. Raises when the batch as a whole is refused.
    """
    results: list[BatchItemResult | None] = [None] * len(records)
    pending = list(range(len(records)))
    while pending:
        request = Request(
            "POST", "/v1/records/batch", batch_body([records[i] for i in pending]), JSON
        )
        response = yield from exchange(request, attempts)
        if response.status != 200:
            raise response_problem(response)
        retry: list[int] = []
        for position, item in zip(pending, parse_batch(response.body, len(pending)), strict=True):
            results[position] = settle_item(item, verifier, records[position])
            if item.problem is not None and retryable_status(item.status):
                retry.append(position)
        pending = retry
        if pending:
            delay = attempts.next_delay()
            if delay is None:
                break  # the retryable items keep their last problem as their result
            yield Sleep(delay)
    return [result for result in results if result is not None]


def verifier_flow(attempts: Attempts) -> Flow[NoteVerifier]:
    """The ledger's verifier key from `GET /v1/log` (trust on first use)."""
    response = yield from exchange(Request("GET", "/v1/log"), attempts)
    if response.status != 200:
        raise response_problem(response)
    return parse_log_verifier(response.body)
