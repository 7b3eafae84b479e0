"""Progress of long operations, as plain events.

Operations report ``ProgressEvent`` values to a ``ProgressSink``; the CLI
renders them as Rich progress bars, the API records the latest one in the
operation's live status. A leaf module: it imports nothing from Pilothouse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    phase: str  # short, stable name ("etcd", "apiservers", "nodes")
    message: str  # what is happening, for people
    done: int = 0
    total: int = 0  # 0: indeterminate


ProgressSink = Callable[[ProgressEvent], None]


def discard(_event: ProgressEvent) -> None:
    """A sink that ignores progress."""
