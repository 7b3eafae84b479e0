"""Structured logging: structlog events (``event`` plus key=value fields) on stderr.

Human-readable key=value lines on a terminal, JSON lines otherwise
(``PILOTHOUSE_LOG_FORMAT=json`` forces JSON). Events carry names and ids,
never credentials.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure(level: str = "INFO") -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    as_json = os.environ.get("PILOTHOUSE_LOG_FORMAT") == "json" or not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
