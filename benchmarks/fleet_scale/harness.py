"""What the fleet-scale benchmarks share: running a step in a child process, describing the
machine, and killing what a run leaves behind. Imported by the scripts next to it (their
directory is on ``sys.path`` when run as ``python benchmarks/fleet_scale/bench_*.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import multiprocessing
import os
import platform as platform_mod
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

from pilothouse import logs

MIB = 1024 * 1024


def _child_entry(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    logs.configure("WARNING")
    try:
        conn.send((True, fn(*args)))
    except BaseException as exc:
        conn.send((False, f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


async def in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` in a fresh (spawned) process and return its result. If this is
    cancelled (Ctrl-C), the child gets SIGINT, then SIGKILL after 30 s."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_entry, args=(sender, fn, args), name=fn.__name__)
    proc.start()
    sender.close()
    try:
        ok, value = await asyncio.to_thread(receiver.recv)
    except EOFError:
        raise RuntimeError(f"{fn.__name__} died (exit code {proc.exitcode})") from None
    finally:
        await asyncio.to_thread(proc.join, 10)  # done, or a terminal's Ctrl-C reached it too
        if proc.is_alive() and proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)  # let it clean up what it was creating
            await asyncio.to_thread(proc.join, 30)
            if proc.is_alive():
                proc.kill()
        await asyncio.to_thread(proc.join)
        receiver.close()
    if not ok:
        raise RuntimeError(f"{fn.__name__} failed: {value}")
    return value


def machine() -> str:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}, {os.cpu_count()} CPUs ({model}), "
        f"{psutil.virtual_memory().total / MIB / 1024:.1f} GiB, Linux {platform_mod.release()}, "
        f"Python {platform_mod.python_version()}"
    )


def kill_leftovers(marker: str) -> list[str]:
    """SIGKILL processes whose command line names ``marker`` (this run's temporary directory)."""
    killed = []
    for proc in psutil.process_iter(["cmdline", "name"]):
        with contextlib.suppress(psutil.Error):
            cmdline = proc.info["cmdline"] or []
            if proc.pid != os.getpid() and any(marker in arg for arg in cmdline):
                proc.kill()
                killed.append(f"{proc.pid} {proc.info['name']}")
    return killed
