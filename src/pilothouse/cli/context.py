"""Opening the platform for a CLI command (settings, logging, store)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pilothouse import logs
from pilothouse.platform import Platform
from pilothouse.settings import load_settings


@contextmanager
def open_platform(log_level: str | None = None) -> Iterator[Platform]:
    settings = load_settings()
    logs.configure(log_level or ("WARNING" if settings.log_level.upper() == "INFO" else settings.log_level))
    platform = Platform.open(settings)
    try:
        yield platform
    finally:
        platform.close()
