"""How long to wait before retrying a provider call.

Exponential backoff with full jitter: the wait before retry ``n`` (0-based) is uniform in
``[0, min(cap, base * 2**n)]``. Full jitter rather than a fixed exponential spreads the
many replay workers that failed together, so they do not hit a recovering provider in
lock-step. A server's own wait (``Retry-After``, or the ``retry-after-ms`` that OpenAI and
compatible servers send) is a floor: the call waits at least that long. A floor longer
than `max_retry_after_s` ends the retries at once, so a batch replay reports the 429
instead of sleeping for minutes.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

_MAX_EXPONENT = 32  # far past any sane cap; keeps 2**n from overflowing a float


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
            raise ValueError("max_retry_after_s must be >= 0")

    def window(self, retry: int) -> float:
        """The jitter window before retry number `retry`."""
        return min(self.cap_s, self.base_s * 2.0 ** min(retry, _MAX_EXPONENT))

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float | None:
        """Seconds to wait before retry number `retry`, or None when not to retry."""
        if retry >= self.max_retries:
            return None
        if retry_after is not None and retry_after > self.max_retry_after_s:
            return None
        jitter = rng.uniform(0.0, self.window(retry))
        return jitter if retry_after is None else max(retry_after, jitter)


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """The server's requested wait in seconds, or None when it gave none we can read.

    ``retry-after-ms`` wins when present, being the more precise; otherwise
    ``Retry-After`` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3). A date in the
    past is 0. `headers` must look names up case-insensitively, as httpx's do.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis)
        except ValueError:
            value = -1.0
        if value >= 0:
            return value / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(int(raw))
    try:
        moment = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # RFC 850 and asctime dates carry no zone; HTTP means GMT
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
