"""``pilothouse alerts`` against the real store: silences and clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PILOTHOUSE = str(Path(sys.executable).with_name("pilothouse"))


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PILOTHOUSE, *args],
        env={**os.environ, **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_silence_list_and_expire(pilothouse_env: dict[str, str]) -> None:
    created = _cli(
        pilothouse_env, "alerts", "silence", "cluster=prod", "alertname=~Node.*", "--duration", "30m"
    )
    assert created.returncode == 0, created.stderr
    silence_id = created.stdout.split()[1]
    listed = _cli(pilothouse_env, "alerts", "silences")
    assert silence_id in listed.stdout
    assert "cluster=prod" in listed.stdout
    expired = _cli(pilothouse_env, "alerts", "unsilence", silence_id)
    assert expired.returncode == 0, expired.stderr
    assert silence_id not in _cli(pilothouse_env, "alerts", "silences").stdout


def test_bad_input_gets_a_clear_error(pilothouse_env: dict[str, str]) -> None:
    for args in (
        ("alerts", "silence", "cluster=prod", "--duration", "forever"),
        ("alerts", "silence", "not a matcher"),
        ("alerts", "ack", "0000000000"),
    ):
        result = _cli(pilothouse_env, *args)
        assert result.returncode == 1, (args, result.stdout)
        assert result.stderr.startswith("error:"), result.stderr
        assert "Traceback" not in result.stderr
    listed = _cli(pilothouse_env, "alerts", "list")
    assert listed.returncode == 0, listed.stderr
