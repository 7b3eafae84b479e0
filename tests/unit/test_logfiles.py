"""Log rotation, tail and follow on real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse.providers.local import logfiles


@pytest.mark.parametrize(
    ("sizes", "max_bytes", "keep", "expected"),
    [
        ({"a": 10, "b": 200}, 100, 3, ["b"]),
        ({"a": 100}, 100, 3, []),
        ({"a": 101, "b": 500}, 100, 2, ["a", "b"]),
        ({"a": 500}, 100, 0, []),
    ],
)
def test_plan_rotation(sizes: dict[str, int], max_bytes: int, keep: int, expected: list[str]) -> None:
    assert logfiles.plan_rotation(sizes, max_bytes=max_bytes, keep=keep) == expected


def test_rotation_shifts_copies_and_truncates_in_place(tmp_path: Path) -> None:
    log = tmp_path / "etcd-0.log"
    with log.open("ab") as writer:  # a writer holding the file open, like the real process
        for generation in range(4):
            writer.write(f"generation {generation}\n".encode() * 50)
            writer.flush()
            assert logfiles.rotate_logs(tmp_path, ["etcd-0", "absent"], max_bytes=10, keep=2) == ["etcd-0"]
            assert log.stat().st_size == 0
        writer.write(b"after rotation\n")
        writer.flush()
    assert log.read_text() == "after rotation\n"
    assert "generation 3" in (tmp_path / "etcd-0.log.1").read_text()
    assert "generation 2" in (tmp_path / "etcd-0.log.2").read_text()
    assert not (tmp_path / "etcd-0.log.3").exists()


def test_only_named_process_logs_are_rotated(tmp_path: Path) -> None:
    (tmp_path / "audit-0.log").write_text("x" * 1000)
    (tmp_path / "kwok.log").write_text("y" * 1000)
    assert logfiles.rotate_logs(tmp_path, ["kwok"], max_bytes=10) == ["kwok"]
    assert (tmp_path / "audit-0.log").stat().st_size == 1000


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(10)))
    assert logfiles.tail(log, 3) == ["line 7", "line 8", "line 9"]
    assert logfiles.tail(log, 0) == []
    assert logfiles.tail(tmp_path / "missing.log", 5) == []


def test_follow_continues_across_truncation(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("old\n")
    lines = logfiles.follow(log, start_at_end=False, poll=0.01)
    assert next(lines) == "old"
    with log.open("a") as handle:
        handle.write("partial")
    with log.open("a") as handle:
        handle.write(" line\n")
    assert next(lines) == "partial line"
    logfiles.rotate(log, keep=1)
    with log.open("a") as handle:
        handle.write("fresh\n")
    assert next(lines) == "fresh"
