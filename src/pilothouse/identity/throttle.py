"""Login throttling and lock-out against password guessing: pure decisions over plain data.

One ``Attempts`` record is kept per key — a user name (``user:alice``) and a
client address (``client:10.0.0.7``) — by ``store.identity``; this module
decides, given that record and the time, whether another attempt may run
now, and what a failure does to the record:

- the first ``free_failures`` failures cost nothing;
- after that each attempt waits ``base_delay · 2^(n - free_failures - 1)``
  (capped at ``max_delay``) since the last failure;
- ``lockout_failures`` failures lock the key for ``lockout``;
- failures older than ``window`` are forgotten; a success clears the user's
  record (the caller deletes it), and a record ``is_forgettable`` may be
  deleted by a periodic prune (it decides nothing any more).

A locked or waiting key is refused *before* the password is checked, so a
correct guess during a lock-out teaches the attacker nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class ThrottlePolicy:
    free_failures: int = 3
    base_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(seconds=60)
    lockout_failures: int = 10
    lockout: timedelta = timedelta(minutes=15)
    window: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class Attempts:
    """Failed logins of one key: how many (within the window), the last one, and any lock."""

    failures: int = 0
    last_failure_at: datetime | None = None
    locked_until: datetime | None = None


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: timedelta = timedelta(0)
    reason: str = ""


def _current(attempts: Attempts, now: datetime, policy: ThrottlePolicy) -> Attempts:
    """``attempts`` with failures older than the window forgotten (a lock still counts until it ends)."""
    last = attempts.last_failure_at
    if last is not None and now - last > policy.window and not _locked(attempts, now):
        return Attempts()
    return attempts


def is_forgettable(attempts: Attempts, now: datetime, policy: ThrottlePolicy) -> bool:
    """Whether the record now decides exactly what no record would, at ``now`` and ever after."""
    return _current(attempts, now, policy) == Attempts() and not _locked(attempts, now)


def forgettable_cutoff(now: datetime, policy: ThrottlePolicy) -> datetime:
    """Records whose last failure is before this (and not locked) are forgettable."""
    return now - policy.window


def _locked(attempts: Attempts, now: datetime) -> bool:
    return attempts.locked_until is not None and attempts.locked_until > now


def delay_after(failures: int, policy: ThrottlePolicy) -> timedelta:
    """How long after the last failure the next attempt must wait."""
    if failures <= policy.free_failures:
        return timedelta(0)
    exponent = min(failures - policy.free_failures - 1, 30)
    delay: timedelta = policy.base_delay * (1 << exponent)
    return min(delay, policy.max_delay)


def check_attempt(attempts: Attempts, now: datetime, policy: ThrottlePolicy) -> Verdict:
    """May an attempt for this key run at ``now``?"""
    if _locked(attempts, now):
        assert attempts.locked_until is not None
        return Verdict(False, attempts.locked_until - now, "locked after too many failed logins")
    current = _current(attempts, now, policy)
    if current.last_failure_at is None:
        return Verdict(True)
    ready_at = current.last_failure_at + delay_after(current.failures, policy)
    if ready_at > now:
        return Verdict(False, ready_at - now, f"{current.failures} failed logins in a row")
    return Verdict(True)


def record_failure(attempts: Attempts, now: datetime, policy: ThrottlePolicy) -> Attempts:
    """The record after one more failure at ``now``: counted, and locked at the threshold."""
    current = _current(attempts, now, policy)
    if current.locked_until is not None and current.locked_until <= now:
        current = Attempts()  # a lock that ran out starts a fresh count
    failures = current.failures + 1
    locked_until = current.locked_until
    if failures >= policy.lockout_failures and not _locked(current, now):
        locked_until = now + policy.lockout
    return Attempts(failures=failures, last_failure_at=now, locked_until=locked_until)
