"""A circuit breaker per provider: closed, open, half-open.

Closed: calls go through and consecutive failures are counted; a success resets the count.
At `failure_threshold` consecutive failures the circuit opens: for `cooldown_s` every call
fails fast with `CircuitOpen` and nothing is sent, which spares a provider that is down
(and the replay's time budget) from a queue of doomed calls. After the cool-down it is
half-open: exactly one probe call is let through while others still fail fast; its success
closes the circuit, its failure opens it for another cool-down.

Only failures whose error class says `trips_breaker` count (see `errors`). The breaker is
used from one event loop, so it needs no lock: no state change spans an ``await``.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from replay.providers.errors import CircuitOpen


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class Outcome(enum.Enum):
    """How an admitted call ended, as far as the provider's health is concerned."""

    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"  # says nothing about health (cancelled, rate-limited, bad input)


class CircuitBreaker:
    def __init__(
        self,
        provider: str,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if cooldown_s < 0:
            raise ValueError("cooldown_s must be >= 0")
        self.provider = provider
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at < self.cooldown_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def check(self) -> None:
        """Raise `CircuitOpen` if a call would be refused now; admits nothing."""
        state = self.state
        if state is BreakerState.OPEN or (
            state is BreakerState.HALF_OPEN and self._probe_in_flight
        ):
            raise self._refusal(state)

    def admit(self) -> None:
        """Admit one call or raise `CircuitOpen`. Every admitted call must be followed by
        exactly one `record`, or a half-open breaker would wait for its probe forever."""
        self.check()
        if self.state is BreakerState.HALF_OPEN:
            self._probe_in_flight = True

    def record(self, outcome: Outcome) -> None:
        was_probe = self._probe_in_flight
        self._probe_in_flight = False
        if outcome is Outcome.SUCCESS:
            self._failures = 0
            self._opened_at = None
        elif outcome is Outcome.FAILURE:
            self._failures += 1
            if was_probe or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()

    def _refusal(self, state: BreakerState) -> CircuitOpen:
        if state is BreakerState.HALF_OPEN:
            return CircuitOpen(self.provider, "circuit half-open: a probe call is in flight")
        assert self._opened_at is not None
        left = self.cooldown_s - (self._clock() - self._opened_at)
        return CircuitOpen(
            self.provider,
            f"circuit open after {self._failures} consecutive failures; "
            f"retry in {max(left, 0.0):.1f}s",
        )
