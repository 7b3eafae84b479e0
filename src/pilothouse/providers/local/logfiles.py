"""Control-plane component logs of local clusters: reading, following, rotating.

Each process writes to ``<cluster>/logs/<process>.log`` through a file
descriptor opened in append mode, so rotation is copy-then-truncate: the
file is copied to ``.1`` (older copies shift to ``.2`` … ``.<keep>``), then
truncated in place, and the process goes on appending from offset 0 without
being restarted. ``plan_rotation`` decides what to rotate (pure);
``rotate`` does it. Readers (``tail``, ``follow``) notice truncation and
start over from the beginning of the new file.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_KEEP = 3


def plan_rotation(sizes: Mapping[str, int], *, max_bytes: int, keep: int) -> list[str]:
    """Names of the log files that have outgrown ``max_bytes`` (none when ``keep`` < 1)."""
    if keep < 1:
        return []
    return sorted(name for name, size in sizes.items() if size > max_bytes)


def log_files(directory: Path, processes: Iterable[str]) -> dict[str, Path]:
    """The current log file of each of ``processes`` that has one.

    Only process logs: the API servers' audit logs in the same directory are rotated by
    the API servers themselves (``--audit-log-maxsize``).
    """
    found = {name: directory / f"{name}.log" for name in processes}
    return {name: path for name, path in sorted(found.items()) if path.is_file()}


def rotate(path: Path, *, keep: int = DEFAULT_KEEP) -> None:
    """Shift ``path.1`` … into ``path.<keep>``, copy ``path`` to ``path.1``, truncate ``path``."""
    for index in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{index + 1}"))
    shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    with path.open("r+b") as handle:
        handle.truncate(0)


def rotate_logs(
    directory: Path, processes: Iterable[str], *, max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP
) -> list[str]:
    """Rotate every outgrown process log in ``directory``; return the process names rotated."""
    files = log_files(directory, processes)
    sizes = {name: path.stat().st_size for name, path in files.items()}
    chosen = plan_rotation(sizes, max_bytes=max_bytes, keep=keep)
    for name in chosen:
        rotate(files[name], keep=keep)
    return chosen


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of ``path`` (without newlines)."""
    if lines <= 0 or not path.exists():
        return []
    kept: deque[str] = deque(maxlen=lines)
    with path.open("r", errors="replace") as handle:
        for line in handle:
            kept.append(line.rstrip("\n"))
    return list(kept)


def follow(path: Path, *, start_at_end: bool = True, poll: float = 0.25) -> Iterator[str]:
    """Yield lines appended to ``path`` forever; survives copy-truncate rotation."""
    position = path.stat().st_size if start_at_end and path.exists() else 0
    pending = ""
    while True:
        size = path.stat().st_size if path.exists() else 0
        if size < position:  # truncated by rotation: the new content starts at 0
            position, pending = 0, ""
        if size > position:
            with path.open("r", errors="replace") as handle:
                handle.seek(position)
                chunk = handle.read()
                position = handle.tell()
            pending += chunk
            *complete, pending = pending.split("\n")
            yield from complete
        else:
            time.sleep(poll)
