"""What the HTTP providers share: mapping httpx failures and HTTP statuses to `errors`,
strict decoding of answers, and timing.

Both wire formats put a human message in their error bodies (OpenAI's
``{"error": {"message"}}``, Anthropic's ``{"type": "error", "error": {"message"}}``); the
error raised quotes it, so an operator reads the provider's own reason on one line.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any, TypeVar

import httpx
import msgspec

from ledger.backoff import retry_after_from_headers
from replay.providers.errors import (
    BadResponse,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
    RateLimited,
    RequestRejected,
    ServerError,
    one_line,
)

T = TypeVar("T")
_JSON = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


def encode_json(value: Any) -> bytes:
    return _ENCODER.encode(value)


def decode_json_text(provider: str, text: str | bytes, what: str) -> Any:
    try:
        return _JSON.decode(text)
    except msgspec.DecodeError as error:
        raise BadResponse(provider, f"{what}: not valid JSON ({error})") from None


def decode_as(provider: str, body: bytes | str, kind: type[T], what: str) -> T:
    """Decode and check an answer against a wire Struct; a mismatch is `BadResponse`
    naming the member at fault (msgspec's ``- at `$.choices[0]...` ``)."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as error:
        raise BadResponse(provider, f"{what} does not match the wire format: {error}") from None
    except msgspec.DecodeError as error:
        raise BadResponse(provider, f"{what} is not JSON: {error}") from None


def convert_as(provider: str, value: Any, kind: type[T], what: str) -> T:
    try:
        return msgspec.convert(value, type=kind)
    except msgspec.ValidationError as error:
        raise BadResponse(provider, f"{what} does not match the wire format: {error}") from None


def tool_arguments(provider: str, raw: str | dict[str, Any] | None, name: str) -> dict[str, Any]:
    """A tool call's arguments as a dict. The OpenAI format sends a JSON string (empty for
    a tool without parameters); anything but a JSON object is a bad response."""
    if raw is None or raw == "":
        return {}
    value = (
        decode_json_text(provider, raw, f"arguments of tool call {name!r}")
        if isinstance(raw, str)
        else raw
    )
    if not isinstance(value, dict):
        raise BadResponse(
            provider, f"arguments of tool call {name!r} are not a JSON object: {raw!r}"
        )
    return value


def status_error(provider: str, response: httpx.Response, body: bytes) -> ProviderError:
    """The error for a non-2xx answer; 408 counts as a timeout, 429 keeps Retry-After."""
    status = response.status_code
    what = f"HTTP {status} from {response.request.method} {response.request.url}"
    reason = _error_message(body)
    detail = f"{what}: {reason}" if reason else what
    if status == 429:
        return RateLimited(provider, detail, retry_after_from_headers(response.headers))
    if status == 408:
        return ProviderTimeout(provider, detail)
    if status >= 500:
        return ServerError(provider, detail, status)
    return RequestRejected(provider, detail, status)


def _error_message(body: bytes) -> str:
    if not body:
        return ""
    try:
        parsed = _JSON.decode(body)
    except msgspec.DecodeError:
        return one_line(body.decode("utf-8", "replace"), 200)
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            kind = error.get("type")
            prefix = f"{kind}: " if isinstance(kind, str) else ""
            return one_line(prefix + error["message"], 200)
        if isinstance(error, str):
            return one_line(error, 200)
    return one_line(body.decode("utf-8", "replace"), 200)


@contextlib.contextmanager
def transport_errors(provider: str, url: str) -> Iterator[None]:
    """Turn httpx's transport exceptions into provider errors, naming the URL."""
    try:
        yield
    except httpx.TimeoutException as error:
        kind = type(error).__name__
        raise ProviderTimeout(provider, f"{kind} on POST {url}") from error
    except httpx.TransportError as error:
        reason = str(error) or type(error).__name__
        raise ProviderUnreachable(provider, f"POST {url} failed: {reason}") from error


def is_success(status: int) -> bool:
    return 200 <= status < 300


class Stopwatch:
    """Milliseconds since creation; the first-token mark is set once."""

    __slots__ = ("_first", "_start")

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._first: int | None = None

    def elapsed_ms(self) -> int:
        return round((time.perf_counter() - self._start) * 1000)

    def mark_first(self) -> None:
        if self._first is None:
            self._first = self.elapsed_ms()

    @property
    def first_ms(self) -> int | None:
        return self._first
