"""Structured logging keeps working when stderr is swapped (test capture, embedding apps)."""

from __future__ import annotations

import io
import json
import sys

import pytest
import structlog

from pilothouse import logs


def test_events_go_to_the_current_stderr_even_after_the_old_one_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logs.configure("INFO")
    structlog.get_logger("t").info("first.event", n=1)
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    structlog.get_logger("t").info("second.event", n=2)
    line = json.loads(second.getvalue())
    assert line["event"] == "second.event"
    assert line["n"] == 2
    structlog.get_logger("t").debug("hidden.event")
    assert "hidden.event" not in second.getvalue()
