"""Timeouts, retries, the circuit breaker and the concurrency limit, against a local server
scripted to fail (no real provider is reachable here; the server speaks the wire formats).

Every assertion about what reached the network is made on the server's own record of the
requests it saw, not on client-side counters.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from replay.providers import (
    BreakerState,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    CircuitBreaker,
    CircuitOpen,
    Outcome,
    ProviderPool,
    ProviderTimeout,
    ProviderUnreachable,
    RateLimited,
    RequestRejected,
    ServerError,
    parse_registry,
)
from tests import replay_support
from tests.model_servers import ENV, ModelServer, registry_toml, unused_port

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


# The local model server fixtures of `tests.replay_support`, bound here for pytest to find.
model_server = replay_support.model_server
srv = replay_support.srv


class FakeClock:
    """Monotonic time the test moves by hand, for the breaker's cool-down."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def state_of(breaker: CircuitBreaker) -> BreakerState:
    # A call, not the property, so the type checker does not pin the state between asserts.
    return breaker.state


def pool(srv: ModelServer, clock: FakeClock | None = None, **settings: Any) -> ProviderPool:
    registry = parse_registry(registry_toml(srv, **settings), source="test-registry.toml")
    return ProviderPool(registry, env=ENV, rng=random.Random(7), clock=clock or time.monotonic)


def hello(model: str = "chat", version: str | None = None) -> ChatRequest:
    return ChatRequest(
        model=model, version=version, messages=[ChatMessage(role="user", content="hello")]
    )


def ask(srv: ModelServer, request: ChatRequest, *, stream: bool = False, **settings: Any) -> Any:
    async def go() -> ChatResponse:
        async with pool(srv, **settings) as models:
            return await models.complete(request, stream=stream)

    return run(go())


# retries ------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", ["chat", "writer"])
def test_500s_are_retried_then_succeed(srv: ModelServer, model: str, stream: bool) -> None:
    srv.script.fail(500, times=2)
    response = ask(srv, hello(model, "v1"), stream=stream, max_retries=2)
    assert response.attempts == 3
    assert response.text
    assert [r.status for r in srv.requests] == [500, 500, 200]


def test_500s_past_the_retries_surface_as_server_error(srv: ModelServer) -> None:
    srv.script.fail(503, times=10)
    with pytest.raises(ServerError) as caught:
        ask(srv, hello(), max_retries=2)
    assert caught.value.status == 503
    assert caught.value.attempts == 3
    assert srv.request_count == 3
    message = str(caught.value)
    assert message.startswith("oa: HTTP 503 from POST http://127.0.0.1:")
    assert message.endswith("(after 3 attempts)")
    assert "\n" not in message


@pytest.mark.parametrize(("status", "error"), [(501, ServerError), (400, RequestRejected)])
def test_permanent_statuses_are_not_retried(
    srv: ModelServer, status: int, error: type[Exception]
) -> None:
    srv.script.fail(status, times=5)
    with pytest.raises(error):
        ask(srv, hello(), max_retries=3)
    assert srv.request_count == 1


def test_a_slow_answer_times_out_and_each_attempt_is_retried(srv: ModelServer) -> None:
    srv.script.delay(3.0, times=5)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as caught:
        ask(srv, hello(), timeout_s=0.25, max_retries=1)
    # A timeout, not the server's answer after 3 s, ended each of the two attempts.
    assert caught.value.attempts == 2
    assert srv.request_count == 2
    assert time.monotonic() - started >= 0.5
    assert "(after 2 attempts)" in str(caught.value)


def test_a_timeout_then_a_prompt_answer_succeeds(srv: ModelServer) -> None:
    srv.script.delay(3.0, times=1)
    response = ask(srv, hello(), timeout_s=0.25, max_retries=2)
    assert response.attempts == 2
    assert srv.request_count == 2


@pytest.mark.parametrize("model", ["chat", "writer"])
def test_the_timeout_covers_a_whole_stream_not_just_each_read(srv: ModelServer, model: str) -> None:
    # Every event arrives within 0.05 s, so no read is slow; the answer as a whole is.
    srv.script.drip(0.05, times=1)
    with pytest.raises(ProviderTimeout, match=r"no complete answer within 0\.4s"):
        ask(srv, hello(model, "v1"), stream=True, timeout_s=0.4, max_retries=0)
    assert srv.request_count == 1


def test_a_stream_that_stalls_times_out(srv: ModelServer) -> None:
    srv.script.stall(3.0, times=1)
    # The stream would finish after the stall; a timeout means it was cut short.
    with pytest.raises(ProviderTimeout):
        ask(srv, hello(), stream=True, timeout_s=0.3, max_retries=0)


def test_429_waits_for_retry_after_seconds(srv: ModelServer) -> None:
    srv.script.fail(429, times=1, retry_after="1")
    response = ask(srv, hello(), max_retries=2)
    first, second = srv.requests
    assert response.attempts == 2
    assert (first.status, second.status) == (429, 200)
    # The backoff window is milliseconds; only the server's Retry-After explains a gap.
    assert second.at - first.at >= 0.95


def test_429_honours_retry_after_ms(srv: ModelServer) -> None:
    srv.script.fail(429, times=2, retry_after_ms=150)
    response = ask(srv, hello("writer", "v1"), max_retries=2)
    times = [r.at for r in srv.requests]
    assert response.attempts == 3
    assert all(later - earlier >= 0.14 for earlier, later in itertools.pairwise(times))
    # Read as seconds, the two waits would be 300 s: milliseconds it is.
    assert times[-1] - times[0] < 60


def test_429_asking_for_too_long_a_wait_is_not_retried(srv: ModelServer) -> None:
    srv.script.fail(429, times=1, retry_after="30")
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        ask(srv, hello(), max_retries=3, max_retry_after_s=5)
    assert caught.value.retry_after == 30.0
    assert caught.value.attempts == 1
    assert srv.request_count == 1
    # It gave up at once rather than sleeping through the 30 s it was asked to wait.
    assert time.monotonic() - started < 20


def test_429s_past_the_retries_surface_as_rate_limited(srv: ModelServer) -> None:
    srv.script.fail(429, times=10, retry_after_ms=10)
    with pytest.raises(RateLimited) as caught:
        ask(srv, hello(), max_retries=2)
    assert caught.value.attempts == 3
    assert srv.request_count == 3


def test_nothing_listening_is_unreachable_after_retries() -> None:
    registry = parse_registry(
        f"""
[providers.gone]
kind = "openai"
base_url = "http://127.0.0.1:{unused_port()}/v1"
retry = {{ max_retries = 2, base_s = 0.001, cap_s = 0.005 }}

[[models]]
name = "chat"
provider = "gone"
"""
    )

    async def go() -> None:
        async with ProviderPool(registry, env={}) as models:
            await models.complete(hello())

    with pytest.raises(ProviderUnreachable) as caught:
        run(go())
    assert caught.value.attempts == 3
    assert "gone: POST http://127.0.0.1:" in str(caught.value)


# the circuit breaker ------------------------------------------------------------------


def test_an_open_breaker_fails_fast_without_touching_the_network(srv: ModelServer) -> None:
    srv.script.fail(500, times=10)

    async def go() -> None:
        async with pool(srv, max_retries=0, failure_threshold=2, cooldown_s=60) as models:
            for _ in range(2):
                with pytest.raises(ServerError):
                    await models.complete(hello())
            assert state_of(models.breaker("oa")) is BreakerState.OPEN
            for _ in range(3):
                with pytest.raises(CircuitOpen, match="circuit open after 2 consecutive"):
                    await models.complete(hello())
            assert srv.request_count == 2
            # The breaker is per provider: the other one still answers.
            srv.script.clear()
            answer = await models.complete(hello("writer", "v1"))
            assert answer.provider == "an"

    run(go())
    assert srv.request_count == 3


def test_the_breaker_opens_between_retries(srv: ModelServer) -> None:
    srv.script.fail(500, times=10)
    with pytest.raises(CircuitOpen) as caught:
        ask(srv, hello(), max_retries=5, failure_threshold=2)
    assert isinstance(caught.value.__cause__, ServerError)
    assert caught.value.attempts == 2
    assert srv.request_count == 2


def test_half_open_probe_closes_or_reopens_the_circuit(srv: ModelServer) -> None:
    clock = FakeClock()

    async def go() -> None:
        async with pool(srv, clock, max_retries=0, failure_threshold=1, cooldown_s=30) as models:
            breaker = models.breaker("oa")
            srv.script.fail(500, times=1)
            with pytest.raises(ServerError):
                await models.complete(hello())
            assert state_of(breaker) is BreakerState.OPEN
            clock.now += 29
            with pytest.raises(CircuitOpen):
                await models.complete(hello())
            assert srv.request_count == 1

            clock.now += 2  # past the cool-down: one probe may go
            assert state_of(breaker) is BreakerState.HALF_OPEN
            srv.script.fail(500, times=1)
            with pytest.raises(ServerError):
                await models.complete(hello())  # the probe fails ...
            assert state_of(breaker) is BreakerState.OPEN  # ... and the circuit opens again
            with pytest.raises(CircuitOpen):
                await models.complete(hello())
            assert srv.request_count == 2

            clock.now += 31
            answer = await models.complete(hello())  # this probe succeeds
            assert answer.text
            assert state_of(breaker) is BreakerState.CLOSED
            assert srv.request_count == 3

    run(go())


def test_half_open_lets_one_probe_through_at_a_time(srv: ModelServer) -> None:
    clock = FakeClock()

    async def go() -> None:
        async with pool(srv, clock, max_retries=0, failure_threshold=1, cooldown_s=5) as models:
            srv.script.fail(500, times=1)
            with pytest.raises(ServerError):
                await models.complete(hello())
            clock.now += 6
            srv.script.latency_s = 0.3
            results = await asyncio.gather(
                models.complete(hello()), models.complete(hello()), return_exceptions=True
            )
            kinds = sorted(type(r).__name__ for r in results)
            assert kinds == ["ChatResponse", "CircuitOpen"]
            assert "probe call is in flight" in str(
                next(r for r in results if isinstance(r, CircuitOpen))
            )

    run(go())
    assert srv.request_count == 2


def test_429_and_4xx_do_not_trip_the_breaker(srv: ModelServer) -> None:
    async def go() -> None:
        async with pool(srv, max_retries=0, failure_threshold=1) as models:
            srv.script.fail(429, times=1, retry_after="1")
            with pytest.raises(RateLimited):
                await models.complete(hello())
            srv.script.fail(422, times=1)
            with pytest.raises(RequestRejected):
                await models.complete(hello())
            assert state_of(models.breaker("oa")) is BreakerState.CLOSED
            assert (await models.complete(hello())).text

    run(go())
    assert srv.request_count == 3


# the concurrency limit ----------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_the_concurrency_limit_bounds_requests_in_flight(srv: ModelServer, limit: int) -> None:
    srv.script.latency_s = 0.15

    async def go() -> list[ChatResponse]:
        async with pool(srv, max_concurrency=limit) as models:
            calls = [models.complete(hello("scorer", f"v{i}")) for i in range(6)]
            return await asyncio.gather(*calls)

    started = time.monotonic()
    answers = run(go())
    assert len({a.text for a in answers}) == 6
    assert srv.max_in_flight == limit
    assert time.monotonic() - started >= 0.15 * (6 / limit) * 0.9


def test_without_a_tight_limit_the_server_sees_the_calls_together(srv: ModelServer) -> None:
    # The check that the server's in-flight count can see concurrency at all.
    srv.script.latency_s = 0.3

    async def go() -> None:
        async with pool(srv, max_concurrency=8) as models:
            await asyncio.gather(*(models.complete(hello()) for _ in range(6)))

    run(go())
    assert srv.max_in_flight >= 4


def test_a_backoff_sleep_does_not_hold_a_slot(srv: ModelServer) -> None:
    # With one slot, a call sleeping 0.5 s before its retry lets another call through.
    srv.script.fail(429, times=1, retry_after_ms=500)

    async def go() -> tuple[float, float]:
        async with pool(srv, max_concurrency=1, max_retries=1) as models:

            async def timed() -> float:
                await models.complete(hello())
                return time.monotonic()

            first = asyncio.ensure_future(timed())
            await asyncio.sleep(0.1)
            second_done = await timed()
            return await first, second_done

    first_done, second_done = run(go())
    assert second_done < first_done


# backoff and breaker units --------------------------------------------------------------


def test_breaker_counts_consecutive_failures_only() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("p", failure_threshold=3, cooldown_s=10, clock=clock)
    for outcome in (Outcome.FAILURE, Outcome.FAILURE, Outcome.SUCCESS, Outcome.FAILURE):
        breaker.admit()
        breaker.record(outcome)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 1
    for _ in range(2):
        breaker.admit()
        breaker.record(Outcome.FAILURE)
    assert state_of(breaker) is BreakerState.OPEN
    with pytest.raises(CircuitOpen, match=r"retry in 10\.0s"):
        breaker.admit()
    clock.now += 10
    breaker.admit()  # the probe
    with pytest.raises(CircuitOpen, match="half-open"):
        breaker.admit()
    breaker.record(Outcome.NEUTRAL)  # a cancelled probe frees the slot for another
    breaker.admit()
    breaker.record(Outcome.SUCCESS)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
