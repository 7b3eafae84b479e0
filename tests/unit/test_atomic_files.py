"""All-or-nothing file writes: the content, the mode, and what a failed write leaves."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pilothouse.atomic_files import write_atomically


def test_replaces_content_with_mode_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.yaml"
    write_atomically(target, "a: 1\n", mode=0o644)
    write_atomically(target, b"a: 2\n", mode=0o600)
    assert target.read_text() == "a: 2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert [p.name for p in target.parent.iterdir()] == ["f.yaml"]


def test_failed_write_keeps_the_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "secret.key"
    write_atomically(target, "old")

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pilothouse.atomic_files.os.replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]
