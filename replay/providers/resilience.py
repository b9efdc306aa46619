"""The guard every provider call goes through: breaker, concurrency limit, timeout, retries.

One `Resilience` exists per provider, so its breaker and its semaphore are shared by every
model routed to that provider. An attempt runs as:

1. the breaker is checked first, so an open circuit fails fast without queueing;
2. a slot of the provider's semaphore is taken, which bounds the requests in flight
   (a self-hosted vLLM or llama.cpp server has few slots, and a batch replay must not
   flood it); waiting for a slot is not counted against the timeout, since the provider
   has not been asked anything yet;
3. the breaker admits the attempt (in half-open state only one probe is admitted);
4. the attempt runs under the per-call timeout, which covers the whole answer, a stream
   included, where httpx's own timeouts only bound each read;
5. its outcome is recorded on the breaker and the slot is released *before* any backoff
   sleep, so a sleeping retry does not hold a slot another call could use.

Retryable errors are retried per the `RetryPolicy`; the last error is raised with
`attempts` set. If the breaker opens between retries, the next attempt raises
`CircuitOpen`, chained to the failure that preceded it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ledger.backoff import Attempts, RetryPolicy
from replay.providers.breaker import CircuitBreaker, Outcome
from replay.providers.errors import (
    CircuitOpen,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    RequestRejected,
)

T = TypeVar("T")


class Resilience:
    def __init__(
        self,
        provider: str,
        *,
        timeout_s: float,
        retry: RetryPolicy,
        breaker: CircuitBreaker,
        max_concurrency: int,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.provider = provider
        self.timeout_s = timeout_s
        self.retry = retry
        self.breaker = breaker
        self.max_concurrency = max_concurrency
        self._semaphore = asyncio.Semaphore(max_concurrency)
        # Jitter needs no cryptographic strength; a seeded rng makes tests repeatable.
        self._rng = rng or random.Random()  # noqa: S311
        self._sleep = sleep
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Attempts running now (holding a semaphore slot)."""
        return self._in_flight

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        """Run `attempt` until it succeeds or may not be retried; return its result and
        the number of attempts made."""
        attempts = Attempts(self.retry, self._rng)
        last: ProviderError | None = None
        while True:
            try:
                result = await self._once(attempt)
            except CircuitOpen as refused:
                refused.attempts = max(attempts.used, 1)
                if last is not None:
                    raise refused from last
                raise
            except ProviderError as error:
                error.attempts = attempts.used + 1
                if not error.retryable:
                    raise
                retry_after = error.retry_after if isinstance(error, RateLimited) else None
                delay = attempts.next_delay(retry_after)
                if delay is None:
                    raise
                last = error
                await self._sleep(delay)
            else:
                return result, attempts.used + 1

    async def _once(self, attempt: Callable[[], Awaitable[T]]) -> T:
        self.breaker.check()
        async with self._semaphore:
            self.breaker.admit()
            self._in_flight += 1
            outcome = Outcome.NEUTRAL  # also what a cancelled attempt leaves
            try:
                try:
                    async with asyncio.timeout(self.timeout_s):
                        result = await attempt()
                except TimeoutError as expired:
                    raise ProviderTimeout(
                        self.provider, f"no complete answer within {self.timeout_s:g}s"
                    ) from expired
            except ProviderError as error:
                if error.trips_breaker:
                    outcome = Outcome.FAILURE
                elif isinstance(error, RequestRejected):
                    outcome = Outcome.SUCCESS  # the server is up and answering
                raise
            else:
                outcome = Outcome.SUCCESS
                return result
            finally:
                self._in_flight -= 1
                self.breaker.record(outcome)
