"""Login throttling decisions on plain data: free failures, doubling delays, lock-out, forgetting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilothouse.identity.throttle import (
    Attempts,
    ThrottlePolicy,
    check_attempt,
    delay_after,
    forgettable_cutoff,
    is_forgettable,
    record_failure,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = ThrottlePolicy(
    free_failures=3,
    base_delay=timedelta(seconds=1),
    max_delay=timedelta(seconds=60),
    lockout_failures=10,
    lockout=timedelta(minutes=15),
    window=timedelta(minutes=15),
)


def fail(
    times: int, *, start: Attempts = Attempts(), at: datetime = T0, every: timedelta = timedelta(0)
) -> Attempts:
    attempts = start
    for i in range(times):
        attempts = record_failure(attempts, at + i * every, POLICY)
    return attempts


def test_nothing_recorded_is_allowed() -> None:
    assert check_attempt(Attempts(), T0, POLICY).allowed


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 0), (3, 0), (4, 1), (5, 2), (6, 4), (9, 32), (10, 60), (40, 60)],
)
def test_the_delay_doubles_after_the_free_failures_up_to_the_cap(failures: int, delay: int) -> None:
    assert delay_after(failures, POLICY) == timedelta(seconds=delay)


def test_a_throttled_key_must_wait_and_is_told_how_long() -> None:
    attempts = fail(5)
    verdict = check_attempt(attempts, T0 + timedelta(seconds=1), POLICY)
    assert not verdict.allowed
    assert verdict.retry_after == timedelta(seconds=1)
    assert "5 failed" in verdict.reason
    assert check_attempt(attempts, T0 + timedelta(seconds=2), POLICY).allowed


def test_the_threshold_locks_for_the_lockout_even_with_the_right_password_next() -> None:
    attempts = fail(10, every=timedelta(seconds=61))
    last = T0 + 9 * timedelta(seconds=61)
    assert attempts.locked_until == last + timedelta(minutes=15)
    for later in (timedelta(seconds=61), timedelta(minutes=14, seconds=59)):
        verdict = check_attempt(attempts, last + later, POLICY)
        assert not verdict.allowed
        assert "locked" in verdict.reason
    assert check_attempt(attempts, last + timedelta(minutes=15), POLICY).allowed


def test_failures_while_locked_do_not_extend_or_reset_the_lock() -> None:
    locked = fail(10)
    again = record_failure(locked, T0 + timedelta(minutes=1), POLICY)
    assert again.locked_until == locked.locked_until
    assert again.failures == 11


def test_a_lock_that_ran_out_starts_a_fresh_count() -> None:
    locked = fail(10)
    after = record_failure(locked, T0 + timedelta(minutes=16), POLICY)
    assert (after.failures, after.locked_until) == (1, None)


def test_old_failures_are_forgotten_after_the_window() -> None:
    attempts = fail(8)
    assert not check_attempt(attempts, T0 + timedelta(seconds=10), POLICY).allowed
    assert check_attempt(attempts, T0 + timedelta(minutes=16), POLICY).allowed
    assert record_failure(attempts, T0 + timedelta(minutes=16), POLICY).failures == 1


_moments = st.integers(min_value=0, max_value=3 * 3600).map(lambda s: T0 + timedelta(seconds=s))


@given(
    failures=st.lists(_moments, max_size=14),
    now=_moments,
    later=st.integers(min_value=0, max_value=3 * 3600),
)
def test_a_forgettable_record_decides_exactly_what_no_record_would(
    failures: list[datetime], now: datetime, later: int
) -> None:
    attempts = Attempts()
    for moment in sorted(failures):
        attempts = record_failure(attempts, moment, POLICY)
    if not is_forgettable(attempts, now, POLICY):
        return
    then = now + timedelta(seconds=later)
    assert check_attempt(attempts, then, POLICY) == check_attempt(Attempts(), then, POLICY)
    assert record_failure(attempts, then, POLICY) == record_failure(Attempts(), then, POLICY)


def test_what_the_prune_may_forget() -> None:
    locked = fail(10, every=timedelta(seconds=1))
    assert locked.locked_until is not None
    assert not is_forgettable(locked, locked.locked_until - timedelta(seconds=1), POLICY)
    assert is_forgettable(locked, locked.locked_until + timedelta(seconds=1), POLICY)
    recent = fail(2)
    assert not is_forgettable(recent, T0 + POLICY.window, POLICY)
    assert is_forgettable(recent, T0 + POLICY.window + timedelta(seconds=1), POLICY)
    assert forgettable_cutoff(T0 + POLICY.window, POLICY) == T0
    assert is_forgettable(Attempts(), T0, POLICY)
