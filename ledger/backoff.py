"""When to retry a call over the network, and how long to wait first: the one rule.

The SDK (`ingest.client`) and the replay providers (`replay.providers`) both retry, and both
use this module, so they cannot disagree. It is pure Python, so the SDK imports it without
the server's dependencies, and it lives in the core because `ingest` and `replay` may not
import each other.

The rule. Retry ``n`` (0-based) waits

    delay = max(retry_after, uniform(0, min(cap_s, base_s * 2**n)))

Exponential backoff with full jitter spreads clients that failed together, so they do not
return together; the server's `Retry-After` (when it sent one) is a floor, never shortened
and never lengthened by the jitter. Without `Retry-After` the wait never exceeds `cap_s`;
with it, never `max(retry_after, cap_s)`. A `Retry-After` longer than `max_retry_after_s`
ends the retries at once, so the caller sees the 429 or 503 with the server's figure rather
than a call that hangs for minutes. After `max_retries` retries there is no further one.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

# 501 and 505 say the server will never do this; retrying cannot help.
PERMANENT_5XX = frozenset({501, 505})
_MAX_EXPONENT = 32  # 2**32 * any sane base is far past any cap; avoids float overflow


def retryable_status(status: int) -> bool:
    """429 and transient 5xx. Other 4xx mean the request itself is wrong: never retried."""
    return status == 429 or (500 <= status <= 599 and status not in PERMANENT_5XX)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`max_retries` retries after the first attempt, so at most ``max_retries + 1`` tries."""

    max_retries: int = 2
    base_s: float = 0.5
    cap_s: float = 20.0
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError("backoff base must be > 0 and <= the cap")
        if self.max_retry_after_s < 0:
            raise ValueError("max_retry_after must be >= 0")

    def window(self, retry: int) -> float:
        """The jitter window before retry number `retry` (0 for the first retry)."""
        return min(self.cap_s, self.base_s * 2.0 ** min(retry, _MAX_EXPONENT))

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float | None:
        """Seconds to wait before retry number `retry`, or None when not to retry at all."""
        if retry >= self.max_retries:
            return None
        if retry_after is not None and retry_after > self.max_retry_after_s:
            return None
        jitter = rng.uniform(0.0, self.window(retry))
        return jitter if retry_after is None else max(retry_after, jitter)


class Attempts:
    """The retry budget of one call, shared by every request the call makes."""

    __slots__ = ("_policy", "_rng", "used")

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self._policy = policy
        self._rng = rng
        self.used = 0

    def next_delay(self, retry_after: float | None = None) -> float | None:
        """The wait before the next retry, spending one; None when the budget is gone."""
        delay = self._policy.delay(self.used, retry_after, self._rng)
        if delay is not None:
            self.used += 1
        return delay


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (RFC 9110 §10.2.3): delay-seconds or an
    HTTP-date. None when absent or unreadable; a date in the past is 0."""
    if value is None:
        return None
    value = value.strip()
    # delay-seconds is ASCII DIGITs only; str.isdigit alone would take other scripts' digits.
    if value.isascii() and value.isdigit():
        return float(int(value))
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # RFC 850 and asctime dates carry no zone; HTTP means GMT
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def retry_after_from_headers(
    headers: Mapping[str, str], now: datetime | None = None
) -> float | None:
    """The server's requested wait in seconds, or None when it gave none we can read.

    ``retry-after-ms`` (sent by OpenAI and compatible servers) wins when present, being the
    more precise; otherwise `Retry-After` as `parse_retry_after` reads it. `headers` must
    look names up case-insensitively, as httpx's do.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis)
        except ValueError:
            value = -1.0
        if value >= 0:
            return value / 1000.0
    return parse_retry_after(headers.get("retry-after"), now)
