"""The one retry rule (`ledger.backoff`) the SDK and the replay providers share.

The rule, against a brute-force oracle: retry n waits max(Retry-After, uniform(0, window))
with window = min(cap, base * 2**n); never below Retry-After, never above the cap unless
Retry-After is; no retry past the budget or past the longest Retry-After waited out.
"""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ingest.client._base as sdk
from ledger.backoff import (
    Attempts,
    RetryPolicy,
    parse_retry_after,
    retry_after_from_headers,
    retryable_status,
)
from replay import providers
from replay.providers import registry


def oracle(policy: RetryPolicy, retry: int, retry_after: float | None, draw: float) -> float | None:
    """The rule written out longhand: `draw` is the uniform [0, 1) sample the jitter uses."""
    if retry >= policy.max_retries:
        return None
    if retry_after is not None and retry_after > policy.max_retry_after_s:
        return None
    window = policy.base_s
    for _ in range(retry):  # doubling step by step, stopping at the cap
        window = min(policy.cap_s, window * 2)
    window = min(policy.cap_s, window)
    jitter = draw * window
    if retry_after is None:
        return jitter
    return retry_after if retry_after >= jitter else jitter


@given(
    max_retries=st.integers(min_value=0, max_value=12),
    retry=st.integers(min_value=0, max_value=14),
    base=st.floats(min_value=0.001, max_value=5),
    cap=st.floats(min_value=5, max_value=60),
    max_retry_after=st.floats(min_value=0, max_value=120),
    retry_after=st.none() | st.floats(min_value=0, max_value=200),
    seed=st.integers(),
)
def test_the_delay_is_the_oracles_and_within_its_bounds(
    max_retries: int,
    retry: int,
    base: float,
    cap: float,
    max_retry_after: float,
    retry_after: float | None,
    seed: int,
) -> None:
    policy = RetryPolicy(max_retries, base, cap, max_retry_after)
    delay = policy.delay(retry, retry_after, random.Random(seed))
    # random.uniform(a, b) is a + (b - a) * random(): the same draw the oracle scales.
    expected = oracle(policy, retry, retry_after, random.Random(seed).random())
    if expected is None:
        assert delay is None
        return
    assert delay is not None
    assert delay == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert delay >= 0
    if retry_after is None:
        assert delay <= cap
    else:
        assert retry_after <= delay <= max(retry_after, cap)  # a floor, never lengthened


def test_retry_after_is_a_floor_not_added_to_the_jitter() -> None:
    # Retry-After above the window: the wait is exactly Retry-After, every time.
    policy = RetryPolicy(max_retries=5, base_s=0.1, cap_s=1.0, max_retry_after_s=30.0)
    rng = random.Random(3)
    assert {policy.delay(retry, 7.0, rng) for retry in range(5)} == {7.0}
    # Below the window: the jitter wins when it draws more, so both values occur.
    wide = RetryPolicy(max_retries=5, base_s=8.0, cap_s=8.0)
    delays = [d for _ in range(500) if (d := wide.delay(0, 2.0, rng)) is not None]
    assert min(delays) == 2.0
    assert max(delays) > 7.5


def test_the_window_doubles_up_to_the_cap_and_the_retries_stop() -> None:
    policy = RetryPolicy(max_retries=3, base_s=0.5, cap_s=3)
    assert [policy.window(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.window(10_000) == 3.0  # no overflow for absurd retry counts
    rng = random.Random(1)
    assert policy.delay(3, None, rng) is None  # the budget is spent
    assert policy.delay(0, 61, rng) is None  # past max_retry_after_s
    with pytest.raises(ValueError, match="base"):
        RetryPolicy(base_s=2, cap_s=1)
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)


def test_the_jitter_covers_the_whole_window() -> None:
    policy = RetryPolicy(max_retries=5, base_s=1.0, cap_s=8.0)
    rng = random.Random(11)
    delays = [d for _ in range(2000) if (d := policy.delay(3, None, rng)) is not None]
    assert len(set(delays)) == len(delays)
    # Full jitter is uniform on [0, 8]: mean 4, and both ends of the window are reached.
    assert 3.6 < statistics.fmean(delays) < 4.4
    assert min(delays) < 0.5
    assert max(delays) > 7.5


def test_attempts_spend_the_budget_once_per_retry() -> None:
    attempts = Attempts(RetryPolicy(max_retries=2), random.Random(1))
    assert attempts.next_delay() is not None
    assert attempts.next_delay(0.5) is not None
    assert attempts.used == 2
    assert attempts.next_delay() is None
    assert attempts.used == 2


def test_retry_after_header_forms() -> None:
    now = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") is None
    assert parse_retry_after("\u0663") is None  # delay-seconds is ASCII digits only
    assert parse_retry_after(None) is None


def test_retry_after_from_headers_prefers_milliseconds() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert retry_after_from_headers({"retry-after": "7"}) == 7.0
    assert retry_after_from_headers({"retry-after-ms": "250", "retry-after": "7"}) == 0.25
    assert retry_after_from_headers({"retry-after-ms": "soon", "retry-after": "7"}) == 7.0
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after_from_headers({"retry-after": later}, now=now) == 90.0
    assert retry_after_from_headers({"retry-after": "tomorrow-ish"}) is None
    assert retry_after_from_headers({}) is None


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (400, False),
        (401, False),
        (404, False),
        (409, False),
        (413, False),
        (422, False),
        (501, False),
        (505, False),
        (200, False),
    ],
)
def test_which_statuses_are_retried(status: int, retry: bool) -> None:
    assert retryable_status(status) is retry


def test_the_sdk_and_the_providers_use_this_module() -> None:
    assert vars(sdk)["RetryPolicy"] is RetryPolicy
    assert providers.RetryPolicy is RetryPolicy
    assert vars(registry)["RetryPolicy"] is RetryPolicy
