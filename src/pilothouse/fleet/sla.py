"""Availability, error budget and burn rate of a cluster, computed from its health history.

Pure: plain data in, plain data out, no clock (``now`` is an argument) and
no I/O; only the standard library (``datetime``, ``dataclasses``) is used.
``fleet/health.py`` produces the observations, ``store/health.py`` keeps them
and hands them back as spans; the SLA report, the ``sla report`` command and
the SLOBurnRateHigh alert call the functions here.

The model, written down because every number depends on it:

- A probe **sample** ``(at, up)`` says the cluster was up (or down) from
  ``at`` until the next sample, but for at most ``max_gap`` (default three
  probe intervals). A longer silence is *unknown* time: neither up nor down,
  so a Pilothouse that was itself stopped neither earns nor burns budget.
- A **span** is ``[start, end)`` with ``up_seconds`` and ``observed_seconds``
  (≤ ``end - start``) inside it. A held sample is a span whose observed time
  is its whole length; a stored rollup (a 5-minute bucket) is a span whose
  seconds are spread evenly over it when a window boundary cuts it.
- **Availability** over a window is up time / observed time in it (``None``
  when nothing was observed). **Coverage** is observed time / window length.
- The **error budget** over the SLO period (30 days) is ``(1 - SLO) * period``
  seconds; observed down time consumes it. Remaining may go negative.
- The **burn rate** over a window is its error rate (down / observed) divided
  by ``1 - SLO``: 1.0 spends the budget exactly over the period.
- **Multiwindow burn-rate alerts** follow the Google SRE workbook (chapter
  "Alerting on SLOs", recommendation 6): page when both the long and the
  short window burn faster than the factor — 1 h and 5 m at 14.4x (2 % of a
  30-day budget in an hour), 6 h and 30 m at 6x (5 % in six hours).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from pilothouse import errors

DEFAULT_SLO = 0.999
PROBE_INTERVAL = timedelta(seconds=10)
#: A sample holds at most this long; silence beyond it is unknown time.
DEFAULT_MAX_GAP = 3 * PROBE_INTERVAL
BUDGET_PERIOD = timedelta(days=30)


class SpanLike(Protocol):
    """What the functions here read from a span; ``store.health.HealthSpan`` is one."""

    @property
    def start(self) -> datetime: ...

    @property
    def end(self) -> datetime: ...

    @property
    def up_seconds(self) -> float: ...

    @property
    def observed_seconds(self) -> float: ...


class SampleLike(Protocol):
    @property
    def at(self) -> datetime: ...

    @property
    def up(self) -> bool: ...


@dataclass(frozen=True)
class Sample:
    """One probe result: was the cluster's client endpoint ready at ``at``."""

    at: datetime
    up: bool


@dataclass(frozen=True)
class Span:
    """``[start, end)`` with the up and observed seconds inside it."""

    start: datetime
    end: datetime
    up_seconds: float
    observed_seconds: float

    @classmethod
    def held(cls, start: datetime, end: datetime, up: bool) -> Span:
        """A span fully observed in one state."""
        seconds = (end - start).total_seconds()
        return cls(start, end, seconds if up else 0.0, seconds)


def spans_from_samples(
    samples: Iterable[SampleLike], *, max_gap: timedelta = DEFAULT_MAX_GAP, until: datetime | None = None
) -> list[Span]:
    """Each sample's state held until the next sample, for at most ``max_gap``, and not past ``until``."""
    ordered = sorted(samples, key=lambda s: s.at)
    spans: list[Span] = []
    for index, sample in enumerate(ordered):
        end = sample.at + max_gap
        if index + 1 < len(ordered):
            end = min(end, ordered[index + 1].at)
        if until is not None:
            end = min(end, until)
        if end > sample.at:
            spans.append(Span.held(sample.at, end, sample.up))
    return spans


# ----- windows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowAvailability:
    """Up and observed time over the ``length`` before ``end``."""

    name: str
    length: timedelta
    end: datetime
    up_seconds: float
    observed_seconds: float

    @property
    def down_seconds(self) -> float:
        return max(0.0, self.observed_seconds - self.up_seconds)

    @property
    def availability(self) -> float | None:
        """Up / observed, in [0, 1]; ``None`` when nothing was observed."""
        if self.observed_seconds <= 0:
            return None
        return min(1.0, max(0.0, self.up_seconds / self.observed_seconds))

    @property
    def coverage(self) -> float:
        """Observed share of the window, in [0, 1]."""
        return min(1.0, max(0.0, self.observed_seconds / self.length.total_seconds()))


def window_name(length: timedelta) -> str:
    """``5m``, ``1h``, ``24h``, ``30d``: the largest unit that divides the length (days from two on)."""
    seconds = int(length.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0 and (unit != "d" or seconds >= 2 * size):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _overlap(span: SpanLike, start: datetime, end: datetime) -> tuple[float, float]:
    """(up, observed) seconds of ``span`` inside ``[start, end)``, spread evenly over the span."""
    lo, hi = max(span.start, start), min(span.end, end)
    if hi <= lo:
        return 0.0, 0.0
    length = (span.end - span.start).total_seconds()
    inside = (hi - lo).total_seconds()
    if inside >= length:
        return span.up_seconds, span.observed_seconds
    fraction = inside / length
    return span.up_seconds * fraction, span.observed_seconds * fraction


def compute_window(spans: Iterable[SpanLike], *, now: datetime, length: timedelta) -> WindowAvailability:
    """Availability over ``[now - length, now)``."""
    if length <= timedelta(0):
        raise errors.InvalidInput(f"a window must be positive, not {length}", hint="use e.g. 1h, 24h, 30d")
    start = now - length
    up = observed = 0.0
    for span in spans:
        span_up, span_observed = _overlap(span, start, now)
        up += span_up
        observed += span_observed
    return WindowAvailability(window_name(length), length, now, up, observed)


def _check_slo(slo: float) -> None:
    if not 0.0 < slo < 1.0:
        raise errors.InvalidInput(
            f"an SLO must be between 0 and 1 (exclusive), not {slo}", hint="99.9 % is 0.999"
        )


# ----- error budget and burn rate --------------------------------------------------------------


@dataclass(frozen=True)
class ErrorBudget:
    """The down time the SLO allows over its period, and how much of it is spent."""

    slo: float
    period: timedelta
    total_seconds: float
    consumed_seconds: float

    @property
    def remaining_seconds(self) -> float:
        """Negative once the budget is overspent."""
        return self.total_seconds - self.consumed_seconds

    @property
    def consumed_fraction(self) -> float:
        return self.consumed_seconds / self.total_seconds

    @property
    def remaining_fraction(self) -> float:
        return self.remaining_seconds / self.total_seconds


def compute_error_budget(
    spans: Iterable[SpanLike], *, now: datetime, slo: float = DEFAULT_SLO, period: timedelta = BUDGET_PERIOD
) -> ErrorBudget:
    """Budget ``(1 - slo) * period``, consumed by the observed down time in the period before ``now``."""
    _check_slo(slo)
    window = compute_window(spans, now=now, length=period)
    return ErrorBudget(slo, period, (1.0 - slo) * period.total_seconds(), window.down_seconds)


def burn_rate(window: WindowAvailability, *, slo: float) -> float | None:
    """Error rate over the window divided by ``1 - slo``; ``None`` when nothing was observed."""
    _check_slo(slo)
    availability = window.availability
    return None if availability is None else (1.0 - availability) / (1.0 - slo)


def compute_burn_rate(
    spans: Iterable[SpanLike], *, now: datetime, length: timedelta, slo: float = DEFAULT_SLO
) -> float | None:
    return burn_rate(compute_window(spans, now=now, length=length), slo=slo)


@dataclass(frozen=True)
class BurnRateRule:
    """Fire when both windows burn faster than ``factor`` (Google SRE workbook, multiwindow)."""

    name: str
    long_window: timedelta
    short_window: timedelta
    factor: float
    severity: str = "page"


FAST_BURN = BurnRateRule("fast-burn", timedelta(hours=1), timedelta(minutes=5), 14.4)
SLOW_BURN = BurnRateRule("slow-burn", timedelta(hours=6), timedelta(minutes=30), 6.0)
DEFAULT_RULES: tuple[BurnRateRule, ...] = (FAST_BURN, SLOW_BURN)


def is_burning(long_burn: float | None, short_burn: float | None, factor: float) -> bool:
    """The multiwindow condition: both windows above ``factor``; an unobserved window never fires.

    The long window says enough budget is gone to matter; the short one says it is
    still going, so the alert resolves minutes after the outage ends, not hours.
    """
    return long_burn is not None and short_burn is not None and long_burn > factor and short_burn > factor


@dataclass(frozen=True)
class BurnRateAlert:
    rule: BurnRateRule
    long_burn: float | None
    short_burn: float | None

    @property
    def firing(self) -> bool:
        return is_burning(self.long_burn, self.short_burn, self.rule.factor)


def detect_burn_rate_alerts(
    spans: Sequence[SpanLike],
    *,
    now: datetime,
    slo: float = DEFAULT_SLO,
    rules: Sequence[BurnRateRule] = DEFAULT_RULES,
) -> tuple[BurnRateAlert, ...]:
    """Evaluate every rule at ``now``; ``firing`` on each result says whether it holds."""
    return tuple(
        BurnRateAlert(
            rule,
            compute_burn_rate(spans, now=now, length=rule.long_window, slo=slo),
            compute_burn_rate(spans, now=now, length=rule.short_window, slo=slo),
        )
        for rule in rules
    )


# ----- the report ------------------------------------------------------------------------------

REPORT_WINDOWS: tuple[timedelta, ...] = (timedelta(hours=1), timedelta(hours=24), timedelta(days=30))


@dataclass(frozen=True)
class BurnRate:
    window: str
    rate: float | None


@dataclass(frozen=True)
class SLAReport:
    """A cluster's SLA at ``now``: availability per window, error budget, burn rates, alerts."""

    cluster: str
    now: datetime
    slo: float
    windows: tuple[WindowAvailability, ...]
    budget: ErrorBudget
    burn_rates: tuple[BurnRate, ...]
    alerts: tuple[BurnRateAlert, ...]

    def window(self, name: str) -> WindowAvailability:
        for window in self.windows:
            if window.name == name:
                return window
        raise KeyError(name)

    @property
    def firing(self) -> tuple[BurnRateAlert, ...]:
        return tuple(alert for alert in self.alerts if alert.firing)


def compute_report(
    cluster: str,
    spans: Sequence[SpanLike],
    *,
    now: datetime,
    slo: float = DEFAULT_SLO,
    windows: Sequence[timedelta] = REPORT_WINDOWS,
    rules: Sequence[BurnRateRule] = DEFAULT_RULES,
    budget_period: timedelta = BUDGET_PERIOD,
) -> SLAReport:
    """Everything the SLA report shows, from the cluster's spans (``HealthStore.samples``)."""
    _check_slo(slo)
    burn_windows = sorted({*windows, *(r.long_window for r in rules), *(r.short_window for r in rules)})
    return SLAReport(
        cluster=cluster,
        now=now,
        slo=slo,
        windows=tuple(compute_window(spans, now=now, length=length) for length in windows),
        budget=compute_error_budget(spans, now=now, slo=slo, period=budget_period),
        burn_rates=tuple(
            BurnRate(window_name(length), compute_burn_rate(spans, now=now, length=length, slo=slo))
            for length in burn_windows
        ),
        alerts=detect_burn_rate_alerts(spans, now=now, slo=slo, rules=rules),
    )
