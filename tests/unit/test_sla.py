"""SLA arithmetic on plain data: worked examples, the SRE-workbook alert table, and properties.

Examples check the numbers an operator would compute by hand; hypothesis checks
invariants over arbitrary probe histories (availability in [0, 1], all-up is
exactly 1.0, more downtime never leaves more budget), and that the store's
downsampling folds samples by the same rule as ``sla.spans_from_samples``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse import errors
from pilothouse.fleet import sla
from pilothouse.store import health as store_health

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
STEP = sla.PROBE_INTERVAL
GAP = sla.DEFAULT_MAX_GAP
HOUR = timedelta(hours=1)


def probes(start: datetime, end: datetime, *, up: bool, step: timedelta = STEP) -> list[sla.Sample]:
    """A sample every ``step`` in ``[start, end)``."""
    count = int((end - start) / step)
    return [sla.Sample(start + i * step, up) for i in range(count)]


def history(*parts: tuple[timedelta, timedelta, bool]) -> list[sla.Span]:
    """Spans of regular probing; each part is (from, to, up) relative to T0."""
    samples = [s for begin, end, up in parts for s in probes(T0 + begin, T0 + end, up=up)]
    return sla.spans_from_samples(samples, max_gap=GAP)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


# ----- samples to spans ------------------------------------------------------------------------


def test_a_sample_holds_until_the_next_one() -> None:
    spans = sla.spans_from_samples([sla.Sample(T0, True), sla.Sample(T0 + timedelta(seconds=10), False)])
    assert spans[0] == sla.Span(T0, T0 + timedelta(seconds=10), 10.0, 10.0)
    assert spans[1] == sla.Span(T0 + timedelta(seconds=10), T0 + timedelta(seconds=40), 0.0, 30.0)


def test_a_gap_longer_than_the_maximum_is_unknown_not_up() -> None:
    spans = sla.spans_from_samples([sla.Sample(T0, True), sla.Sample(T0 + minutes(10), True)], max_gap=GAP)
    window = sla.compute_window(spans, now=T0 + minutes(10), length=minutes(10))
    assert window.observed_seconds == 30.0
    assert window.availability == 1.0
    assert window.coverage == pytest.approx(30 / 600)


def test_samples_are_ordered_and_clipped_at_until() -> None:
    spans = sla.spans_from_samples(
        [sla.Sample(T0 + timedelta(seconds=10), False), sla.Sample(T0, True)],
        until=T0 + timedelta(seconds=15),
    )
    assert [(s.start, s.end, s.up_seconds) for s in spans] == [
        (T0, T0 + timedelta(seconds=10), 10.0),
        (T0 + timedelta(seconds=10), T0 + timedelta(seconds=15), 0.0),
    ]


# ----- windows ---------------------------------------------------------------------------------


def test_availability_is_time_weighted_over_the_window() -> None:
    spans = history((timedelta(0), minutes(50), True), (minutes(50), minutes(60), False))
    window = sla.compute_window(spans, now=T0 + HOUR, length=HOUR)
    assert window.name == "1h"
    assert window.observed_seconds == pytest.approx(3600)
    assert window.down_seconds == pytest.approx(600)
    assert window.availability == pytest.approx(5 / 6)
    assert window.coverage == pytest.approx(1.0)


def test_a_window_without_observations_has_no_availability() -> None:
    window = sla.compute_window([], now=T0, length=HOUR)
    assert window.availability is None
    assert window.coverage == 0.0
    assert sla.burn_rate(window, slo=0.999) is None


def test_a_rollup_cut_by_the_window_edge_counts_pro_rata() -> None:
    bucket = sla.Span(T0, T0 + minutes(5), up_seconds=240.0, observed_seconds=300.0)
    window = sla.compute_window([bucket], now=T0 + minutes(5), length=minutes(2))
    assert window.observed_seconds == pytest.approx(120.0)
    assert window.up_seconds == pytest.approx(96.0)
    assert window.availability == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("length", "name"),
    [
        (minutes(5), "5m"),
        (HOUR, "1h"),
        (timedelta(hours=24), "24h"),
        (timedelta(hours=48), "2d"),
        (timedelta(days=30), "30d"),
    ],
)
def test_window_names(length: timedelta, name: str) -> None:
    assert sla.window_name(length) == name


def test_a_window_must_be_positive() -> None:
    with pytest.raises(errors.InvalidInput):
        sla.compute_window([], now=T0, length=timedelta(0))


@pytest.mark.parametrize("slo", [0.0, 1.0, 99.9, -0.5])
def test_an_slo_must_be_a_fraction(slo: float) -> None:
    with pytest.raises(errors.InvalidInput, match="between 0 and 1"):
        sla.compute_error_budget([], now=T0, slo=slo)


# ----- budget and burn rate --------------------------------------------------------------------


def test_error_budget_of_99_9_over_30_days_is_43_minutes_12_seconds() -> None:
    start = timedelta(0)
    spans = history((start, minutes(60), True), (minutes(60), minutes(60) + timedelta(seconds=1296), False))
    now = T0 + minutes(60) + timedelta(seconds=1296)
    budget = sla.compute_error_budget(spans, now=now, slo=0.999)
    assert budget.total_seconds == pytest.approx(2592.0)
    assert budget.consumed_seconds == pytest.approx(1296.0)
    assert budget.remaining_seconds == pytest.approx(1296.0)
    assert budget.consumed_fraction == pytest.approx(0.5)
    assert budget.remaining_fraction == pytest.approx(0.5)


def test_an_overspent_budget_goes_negative() -> None:
    spans = history((timedelta(0), HOUR, False))
    budget = sla.compute_error_budget(spans, now=T0 + HOUR, slo=0.999)
    assert budget.remaining_seconds == pytest.approx(2592.0 - 3600.0)
    assert budget.remaining_fraction < 0


def test_burn_rate_is_error_rate_over_the_allowed_error_rate() -> None:
    spans = history((timedelta(0), minutes(59), True), (minutes(59), minutes(60), False))
    assert sla.compute_burn_rate(spans, now=T0 + HOUR, length=HOUR, slo=0.999) == pytest.approx(
        (1 / 60) / 0.001
    )
    assert sla.compute_burn_rate(spans, now=T0 + HOUR, length=minutes(5), slo=0.999) == pytest.approx(
        (1 / 5) / 0.001
    )


@pytest.mark.parametrize(
    ("long_burn", "short_burn", "factor", "firing"),
    [
        (15.0, 15.0, 14.4, True),
        (15.0, 14.4, 14.4, False),  # strictly above, as in the workbook's PromQL
        (14.0, 100.0, 14.4, False),  # a short blip does not page
        (100.0, 1.0, 14.4, False),  # the outage is over: the alert resolves
        (None, 100.0, 14.4, False),
        (100.0, None, 14.4, False),
        (7.0, 6.5, 6.0, True),
    ],
)
def test_the_multiwindow_condition(
    long_burn: float | None, short_burn: float | None, factor: float, firing: bool
) -> None:
    assert sla.is_burning(long_burn, short_burn, factor) is firing


def test_a_two_minute_outage_pages_fast_burn_and_resolves_five_minutes_later() -> None:
    spans = history(
        (timedelta(0), minutes(60), True), (minutes(60), minutes(62), False), (minutes(62), minutes(80), True)
    )

    during = {a.rule.name: a for a in sla.detect_burn_rate_alerts(spans, now=T0 + minutes(62))}
    # 1 h: 120 s of 3600 down = burn 33.3; 5 m: 120 s of 300 = burn 400
    assert during["fast-burn"].long_burn == pytest.approx(120 / 3600 / 0.001)
    assert during["fast-burn"].firing
    assert during["slow-burn"].firing  # 6 h window: 120 s of 3720 s observed = burn 32

    after = {a.rule.name: a for a in sla.detect_burn_rate_alerts(spans, now=T0 + minutes(68))}
    assert after["fast-burn"].long_burn == pytest.approx(120 / 3600 / 0.001)  # still far above 14.4
    assert after["fast-burn"].short_burn == 0.0
    assert not after["fast-burn"].firing


def test_a_short_blip_does_not_page() -> None:
    blip_end = minutes(60) + timedelta(seconds=20)
    spans = history(
        (timedelta(0), minutes(60), True), (minutes(60), blip_end, False), (blip_end, minutes(65), True)
    )
    alerts = sla.detect_burn_rate_alerts(spans, now=T0 + minutes(65))
    assert [a.firing for a in alerts] == [False, False]


def test_the_report_has_every_window_budget_burn_rate_and_alert() -> None:
    spans = history((timedelta(0), timedelta(hours=2), True))
    report = sla.compute_report("prod", spans, now=T0 + timedelta(hours=2))
    assert [w.name for w in report.windows] == ["1h", "24h", "30d"]
    assert report.window("1h").availability == 1.0
    assert report.window("30d").coverage == pytest.approx(2 / (30 * 24), rel=1e-3)
    assert [b.window for b in report.burn_rates] == ["5m", "30m", "1h", "6h", "24h", "30d"]
    assert all(b.rate == 0.0 for b in report.burn_rates)
    assert report.budget.remaining_fraction == 1.0
    assert report.firing == ()
    with pytest.raises(KeyError):
        report.window("7d")


# ----- properties ------------------------------------------------------------------------------

offsets = st.lists(st.integers(min_value=0, max_value=4 * 3600), min_size=0, max_size=60, unique=True)


@st.composite
def sample_lists(draw: st.DrawFn) -> list[sla.Sample]:
    seconds = sorted(draw(offsets))
    states = draw(st.lists(st.booleans(), min_size=len(seconds), max_size=len(seconds)))
    return [sla.Sample(T0 + timedelta(seconds=s), up) for s, up in zip(seconds, states, strict=True)]


windows = st.sampled_from([minutes(5), minutes(30), HOUR, timedelta(hours=6), timedelta(days=30)])
nows = st.integers(min_value=0, max_value=5 * 3600).map(lambda s: T0 + timedelta(seconds=s))


@given(samples=sample_lists(), length=windows, now=nows)
def test_availability_and_coverage_are_fractions(
    samples: list[sla.Sample], length: timedelta, now: datetime
) -> None:
    window = sla.compute_window(sla.spans_from_samples(samples), now=now, length=length)
    assert window.availability is None or 0.0 <= window.availability <= 1.0
    assert 0.0 <= window.coverage <= 1.0
    assert window.observed_seconds <= length.total_seconds() + 1e-6
    rate = sla.burn_rate(window, slo=0.999)
    assert rate is None or 0.0 <= rate <= 1000.0 + 1e-6


@given(samples=sample_lists(), length=windows, now=nows)
def test_all_up_is_exactly_one(samples: list[sla.Sample], length: timedelta, now: datetime) -> None:
    up = [sla.Sample(s.at, True) for s in samples]
    window = sla.compute_window(sla.spans_from_samples(up), now=now, length=length)
    assert window.availability in (None, 1.0)
    assert window.down_seconds == 0.0


@settings(max_examples=60)
@given(samples=sample_lists(), order=st.randoms(use_true_random=False), now=nows)
def test_remaining_budget_never_grows_as_downtime_grows(
    samples: list[sla.Sample], order: random.Random, now: datetime
) -> None:
    current = [sla.Sample(s.at, True) for s in samples]
    indices = list(range(len(current)))
    order.shuffle(indices)
    remaining = sla.compute_error_budget(sla.spans_from_samples(current), now=now).remaining_seconds
    assert remaining == pytest.approx(sla.compute_error_budget([], now=now).total_seconds)
    for index in indices:
        current[index] = sla.Sample(current[index].at, False)
        after = sla.compute_error_budget(sla.spans_from_samples(current), now=now).remaining_seconds
        assert after <= remaining + 1e-9
        remaining = after


@given(samples=sample_lists(), bucket_minutes=st.sampled_from([1, 5]))
def test_the_store_folds_samples_by_the_same_rule(samples: list[sla.Sample], bucket_minutes: int) -> None:
    """Downsampling keeps every up and observed second: buckets sum to the spans' totals."""
    bucket = minutes(bucket_minutes)
    spans = sla.spans_from_samples(samples, max_gap=GAP)
    folded = store_health._fold([(s.at, s.up, None) for s in samples], None, max_gap=GAP, bucket=bucket)
    assert sum(b.observed_seconds for b in folded.values()) == pytest.approx(
        sum(s.observed_seconds for s in spans)
    )
    assert sum(b.up_seconds for b in folded.values()) == pytest.approx(sum(s.up_seconds for s in spans))
    assert sum(b.samples for b in folded.values()) == len(samples)
    # and over any bucket-aligned window the two give the same availability
    as_spans = [
        sla.Span(start, start + bucket, b.up_seconds, b.observed_seconds) for start, b in folded.items()
    ]
    end = T0 + timedelta(hours=5)
    for length in (HOUR, timedelta(hours=6)):
        raw = sla.compute_window(spans, now=end, length=length)
        rolled = sla.compute_window(as_spans, now=end, length=length)
        assert rolled.observed_seconds == pytest.approx(raw.observed_seconds)
        assert rolled.up_seconds == pytest.approx(raw.up_seconds)
