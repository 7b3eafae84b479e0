"""Durable, all-or-nothing file writes.

Everything Pilothouse writes that a crash must not leave half-written (PKI
files, component configs, the CLI session, drill state, cached binaries and
backup snapshots) goes through here:

- ``write_atomically`` writes to a randomly named sibling created with the
  final mode (so a secret is never readable, not even for a moment, by anyone
  else), fsyncs it, renames it over the target and fsyncs the directory.
  A reader sees the old content or the new, never a mix; after a crash the
  only trace is a hidden ``.<name>.*.tmp`` sibling.
- ``fsync_file`` and ``fsync_dir`` are the two halves for callers that stage
  files themselves (the binary cache renames whole directories).

The standard library does the work (``tempfile``, ``os.replace``); the
archived ``atomicwrites`` package is the only library for it and is not kept.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_file(path: Path) -> None:
    """Flush ``path``'s content to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush ``path``'s directory entries (a rename into it) to stable storage."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, content: str | bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``content`` (str is UTF-8) at ``mode``, durably.

    Missing parent directories are created with mode 0700.
    """
    data = content.encode() if isinstance(content, str) else content
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
