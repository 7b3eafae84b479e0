"""Durations typed on the command line."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pilothouse import errors
from pilothouse.cli.alerts import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d12h", timedelta(hours=36)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "2", "h", "2 hours", "1h x", "-1h"])
def test_bad_durations_are_refused_clearly(text: str) -> None:
    with pytest.raises(errors.InvalidInput, match="duration"):
        parse_duration(text)
