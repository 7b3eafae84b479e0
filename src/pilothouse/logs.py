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


class _StderrLogger:
    """Writes each event line to whatever ``sys.stderr`` is at that moment.

    structlog's own print logger keeps the stream it was created with; a stream that
    is later replaced and closed (test capture, an embedding application) would then
    turn every log call into an error.
    """

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _stderr_logger(*_args: object) -> _StderrLogger:
    return _StderrLogger()


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
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
