"""The reconcile loop: runs every reconciler periodically, forever, and survives their failures.

Each pass is level-triggered (it compares desired and observed state from
scratch), so a crash of Pilothouse at any moment is repaired by the next pass
after a restart. A failing pass is logged and retried with bounded backoff.
"""

from __future__ import annotations

import asyncio

import structlog

from pilothouse.platform import Platform

log = structlog.get_logger(__name__)
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)


async def run_reconcilers(platform: Platform) -> None:
    failures = 0
    interval = platform.settings.reconcile_interval_seconds
    while True:
        try:
            acted = await platform.clusters.reconcile_local()
            if acted:
                log.info("reconcile.pass", acted=acted)
            failures = 0
            await asyncio.sleep(interval)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a reconciler bug must not stop the loop
            delay = BACKOFF[min(failures, len(BACKOFF) - 1)]
            failures += 1
            log.error("reconcile.failed", error_type=type(exc).__name__, error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
