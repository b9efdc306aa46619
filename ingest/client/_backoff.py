"""When to retry, and how long to wait first.

Exponential backoff with full jitter (each wait is uniform in ``[0, min(cap, base * 2**n)]``)
spreads clients that failed together, so they do not return together. A server's
`Retry-After` is a floor: the wait is that many seconds plus the jitter. A floor longer than
`max_retry_after` ends the retries instead, and the caller sees the 429 or 503 with the
server's figure, rather than a call that hangs for minutes.
"""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass
from datetime import UTC, datetime

# 501 and 505 say the server will never do this; retrying cannot help.
_PERMANENT_5XX = frozenset({501, 505})
_MAX_EXPONENT = 32  # 2**32 * any sane base is far past any cap; avoids float overflow


def retryable_status(status: int) -> bool:
    """429 and transient 5xx. Other 4xx mean the request itself is wrong: never retried."""
    return status == 429 or (500 <= status <= 599 and status not in _PERMANENT_5XX)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (RFC 9110 §10.2.3): delay-seconds or an
    HTTP-date. None when absent or unreadable; a date in the past is 0."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # RFC 850 and asctime dates carry no zone; HTTP means GMT
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 5
    base: float = 0.1
    cap: float = 10.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not 0 < self.base <= self.cap:
            raise ValueError("backoff base must be > 0 and <= the cap")
        if self.max_retry_after < 0:
            raise ValueError("max_retry_after must be >= 0")

    def window(self, retry: int) -> float:
        """The jitter window before retry number `retry` (0 for the first retry)."""
        return min(self.cap, self.base * 2.0 ** min(retry, _MAX_EXPONENT))

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float | None:
        """Seconds to wait before retry number `retry`, or None when not to retry at all."""
        if retry >= self.max_retries:
            return None
        if retry_after is not None and retry_after > self.max_retry_after:
            return None
        jitter = rng.uniform(0.0, self.window(retry))
        return jitter if retry_after is None else retry_after + jitter


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
