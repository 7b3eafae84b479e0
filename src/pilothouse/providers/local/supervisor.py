"""Starting, finding and stopping the processes of local clusters.

Processes run detached (their own session), so they outlive the Pilothouse
command that started them; each is recorded as ``{pid, create_time}`` so a
later Pilothouse finds it again and never mistakes a recycled PID for it
(psutil reads process start times). Stopping sends SIGTERM to the process
group, then SIGKILL after a grace period, and reaps it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import structlog

from pilothouse import errors

log = structlog.get_logger(__name__)

# Popen objects of children started by this process, kept so they are reaped
# (no zombies) and never garbage-collected while running.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ProcessRecord:
    """How to find a started process again."""

    pid: int
    create_time: float

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "create_time": self.create_time}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(pid=int(data["pid"]), create_time=float(data["create_time"]))


def start(
    name: str, argv: tuple[str, ...], *, log_file: Path, cwd: Path, env: Mapping[str, str] | None = None
) -> ProcessRecord:
    """Start ``argv`` detached with output appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    with log_file.open("ab") as out:
        out.write(f"\n--- pilothouse: starting {name} at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode())
        out.flush()
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=full_env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise errors.ProcessFailed(
                f"cannot start {name}: {exc.strerror} ({argv[0]})",
                hint="check the binary exists and is executable (`pilothouse binaries verify`)",
            ) from None
    _children[popen.pid] = popen
    record = ProcessRecord(pid=popen.pid, create_time=psutil.Process(popen.pid).create_time())
    log.info("process.started", process=name, pid=popen.pid)
    return record


def _reap(pid: int) -> None:
    popen = _children.get(pid)
    if popen is not None and popen.poll() is not None:
        _children.pop(pid, None)


def is_running(record: ProcessRecord) -> bool:
    """True when the recorded process is alive (not a zombie, not a recycled PID)."""
    _reap(record.pid)
    try:
        process = psutil.Process(record.pid)
        if abs(process.create_time() - record.create_time) > 0.05:
            return False
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def executable(record: ProcessRecord) -> Path | None:
    """The binary the recorded process runs (None: gone or unreadable)."""
    if not is_running(record):
        return None
    try:
        return Path(psutil.Process(record.pid).exe())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def stop(name: str, record: ProcessRecord, *, grace: float = 10.0) -> None:
    """Stop the process (and its group): SIGTERM, then SIGKILL after ``grace`` seconds."""
    if not is_running(record):
        _reap(record.pid)
        return
    try:
        process = psutil.Process(record.pid)
        pgid = os.getpgid(record.pid)
        os.killpg(pgid, signal.SIGTERM)
    except (psutil.NoSuchProcess, ProcessLookupError):
        return
    _gone, alive = psutil.wait_procs([process], timeout=grace)
    if alive:
        log.warning("process.kill", process=name, pid=record.pid, after_seconds=grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)
    _reap(record.pid)
    popen = _children.pop(record.pid, None)
    if popen is not None:
        popen.wait(timeout=5)
    log.info("process.stopped", process=name, pid=record.pid)


def kill(record: ProcessRecord) -> None:
    """SIGKILL the process at once (used by failure tests and by abort paths)."""
    if is_running(record):
        os.kill(record.pid, signal.SIGKILL)
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(record.pid).wait(timeout=5)
    _reap(record.pid)


def find_unrecorded(argv: tuple[str, ...], *, known: set[int]) -> list[psutil.Process]:
    """Running processes started with ``argv``'s arguments (any binary: another version of the
    same component counts) whose PID is not in ``known``: started by a Pilothouse that died
    before it could record them."""
    me = os.getpid()
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        pid = process.info["pid"]
        if pid == me or pid in known:
            continue
        cmdline = process.info["cmdline"] or []
        if len(cmdline) == len(argv) and tuple(cmdline[1:]) == argv[1:]:
            with contextlib.suppress(psutil.Error):
                if process.status() != psutil.STATUS_ZOMBIE:
                    found.append(process)
    return found


def record_of(process: psutil.Process) -> ProcessRecord:
    return ProcessRecord(pid=process.pid, create_time=process.create_time())


def stop_strays(directory: Path, *, grace: float = 10.0) -> list[int]:
    """Stop processes that run out of ``directory`` but are not recorded anywhere.

    Every process of a local cluster names files under the cluster's directory on its
    command line; one that is running but unrecorded (its record was lost in a crash
    between start and persist) would otherwise outlive the cluster. Returns their PIDs.
    """
    marker = f"{directory.resolve()}/"
    me = os.getpid()
    strays = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if process.info["pid"] == me:
            continue
        cmdline = process.info["cmdline"] or []
        if any(marker in arg for arg in cmdline):
            strays.append(process)
    for process in strays:
        log.warning("process.stray", pid=process.pid, directory=str(directory))
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _gone, alive = psutil.wait_procs(strays, timeout=grace)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)
    for process in strays:
        _reap(process.pid)
        popen = _children.pop(process.pid, None)
        if popen is not None:
            popen.poll()
    return [p.pid for p in strays]
