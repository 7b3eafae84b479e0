"""``pilothouse login|logout|user|team|role|token`` as real subprocesses against a store of their own.

The first commands run as the local operator (the owner of the secret key, a
platform admin) and set up users; then a user signs in, the session file is
checked (0600, token only there), and the same single check refuses what the
user's roles do not allow. Errors are ``error:``/``hint:`` with exit code 1.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest

from pilothouse.platform import Platform
from pilothouse.settings import load_settings

PILOTHOUSE = Path(sys.executable).with_name("pilothouse")
PASSWORD = "erin passphrase 42"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("identity-cli")


@pytest.fixture(scope="module")
def env(home: Path) -> dict[str, str]:
    return {
        "PILOTHOUSE_DATA_DIR": str(home / "data"),
        "PILOTHOUSE_CONFIG_DIR": str(home / "config"),
        "PILOTHOUSE_CONFIG": str(home / "config" / "config.yaml"),
    }


def cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "PILOTHOUSE_TOKEN"}
    return subprocess.run(
        [str(PILOTHOUSE), *args],
        env={**base, **env, "COLUMNS": "250", "NO_COLOR": "1"},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 1, output
    assert result.stderr.startswith("error: "), result.stderr
    assert "\nhint: " in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    return result.stderr


@pytest.fixture(scope="module")
def platform(env: dict[str, str], home: Path) -> Iterator[Platform]:
    """The same store, opened by the test to check what the commands did."""
    platform = Platform.open(load_settings(data_dir=home / "data", config_dir=home / "config"))
    yield platform
    platform.close()


def test_sign_in_acts_as_the_user_and_sign_out_ends_it(
    env: dict[str, str], home: Path, platform: Platform
) -> None:
    # the local operator (owner of the secret key) sets things up
    ok(cli(env, "user", "create", "erin", "--password-stdin", stdin=f"{PASSWORD}\n"))
    ok(cli(env, "team", "create", "sre"))
    ok(cli(env, "team", "add", "sre", "erin"))
    assert "bound operator to team sre on cluster/prod" in ok(
        cli(env, "role", "bind", "operator", "--team", "sre", "--cluster", "prod")
    )
    refused(
        cli(env, "role", "bind", "viewer", "--user", "erin", "--namespace", "web"),
        "a namespace scope needs its cluster",
    )
    refused(cli(env, "role", "bind", "emperor", "--user", "erin"), "unknown role")

    refused(
        cli(env, "login", "--user", "erin", "--password-stdin", stdin="not the password\n"),
        "wrong user name or password",
    )
    signed = ok(cli(env, "login", "--user", "erin", "--password-stdin", stdin=f"{PASSWORD}\n"))
    assert "signed in as erin" in signed
    session_file = home / "config" / "session.json"
    assert stat.S_IMODE(session_file.stat().st_mode) == 0o600
    token = json.loads(session_file.read_text())["token"]
    assert token.startswith("phs_")
    assert token not in signed
    assert platform.identity.authenticate(token).user == "erin"

    # now every identity command is checked against erin's roles (operator on prod only)
    refused(cli(env, "user", "list"), "user:erin has no role granting users:read on platform")
    refused(cli(env, "role", "bind", "viewer", "--user", "erin", "--cluster", "prod"), "roles:bind")
    refused(cli(env, "token", "issue", "mine"), "tokens:admin")
    refused(cli(env, "team", "require-mfa", "sre"), "teams:admin")

    assert "signed out erin" in ok(cli(env, "logout"))
    assert not session_file.exists()
    with pytest.raises(Exception, match="signed out"):
        platform.identity.authenticate(token)
    assert "erin" in ok(cli(env, "user", "list"))  # the local operator again


def test_a_saved_session_that_stopped_working_is_an_error_not_a_fallback(
    env: dict[str, str], platform: Platform
) -> None:
    ok(cli(env, "login", "--user", "erin", "--password-stdin", stdin=f"{PASSWORD}\n"))
    platform.identity.revoke_sessions("erin")
    refused(cli(env, "user", "list"), "your saved session (erin) no longer works", "signed out")
    ok(cli(env, "logout"))


def test_mfa_enrolment_from_the_cli_and_a_replayed_code(env: dict[str, str]) -> None:
    enrolled = ok(cli(env, "user", "mfa", "enroll", "erin"))
    uri = next(line for line in enrolled.splitlines() if line.startswith("otpauth://"))
    assert "█" in enrolled or "▀" in enrolled  # the QR code, drawn for the terminal
    refused(cli(env, "login", "--user", "erin", "--password-stdin", stdin=f"{PASSWORD}\n"), "second factor")
    code = pyotp.TOTP(parse_qs(urlsplit(uri).query)["secret"][0]).at(
        datetime.now(UTC) + timedelta(seconds=30)
    )
    first = ok(cli(env, "login", "--user", "erin", "--password-stdin", "--code", code, stdin=f"{PASSWORD}\n"))
    assert "MFA is now on" in first
    assert len([line for line in first.splitlines() if line.count("-") == 3]) == 10  # recovery codes, once
    refused(
        cli(env, "login", "--user", "erin", "--password-stdin", "--code", code, stdin=f"{PASSWORD}\n"),
        "already used",
    )
    ok(cli(env, "logout"))


def test_tokens_are_issued_scoped_listed_without_values_and_revoked(
    env: dict[str, str], platform: Platform
) -> None:
    issued = ok(cli(env, "token", "issue", "ci", "--role", "viewer", "--cluster", "prod", "--ttl-hours", "1"))
    token = issued.strip().splitlines()[-1]
    assert token.startswith("ph_")
    assert "viewer on cluster/prod" in issued
    listed = ok(cli(env, "token", "list"))
    assert "viewer@cluster/prod" in listed
    assert token not in listed
    as_token = subprocess.run(
        [str(PILOTHOUSE), "role", "list", "--cluster", "prod"],
        env={**os.environ, **env, "PILOTHOUSE_TOKEN": token, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    refused(as_token, "roles:read")
    ok(cli(env, "token", "revoke", "ci"))
    with pytest.raises(Exception, match="revoked"):
        platform.identity.authenticate(token)


def test_day_two_commands_go_through_the_same_check(env: dict[str, str], platform: Platform) -> None:
    """Cluster, fleet, alert and operation commands are checked like identity commands."""
    ok(cli(env, "user", "create", "fred", "--password-stdin", stdin=f"{PASSWORD}\n"))
    ok(cli(env, "role", "bind", "operator", "--user", "fred", "--cluster", "prod"))
    ok(cli(env, "login", "--user", "fred", "--password-stdin", stdin=f"{PASSWORD}\n"))
    try:
        # allowed on prod: the command runs (and finds no such cluster in this store)
        shown = cli(env, "cluster", "show", "prod")
        assert "has no role granting" not in shown.stderr, shown.stderr
        assert shown.returncode == 1
        refused(
            cli(env, "cluster", "kubeconfig", "prod"), "user:fred has no role granting clusters:credentials"
        )
        refused(cli(env, "cluster", "stop", "staging"), "clusters:write on cluster/staging")
        refused(cli(env, "fleet", "status"), "clusters:read on platform")
        refused(cli(env, "cluster", "create", "new-one"), "clusters:write on platform")
        refused(cli(env, "alerts", "silence", "cluster=prod"), "alerts:manage on platform")
        refused(cli(env, "backup", "create", "staging"), "clusters:write on cluster/staging")
        refused(cli(env, "operations", "pause", "0123abcd"), "clusters:write on platform")
    finally:
        ok(cli(env, "logout"))


def test_deleting_a_user_and_a_team_asks_first_and_says_what_went(
    env: dict[str, str], platform: Platform
) -> None:
    ok(cli(env, "user", "create", "gina", "--password-stdin", stdin=f"{PASSWORD}\n"))
    ok(cli(env, "team", "create", "temps"))
    ok(cli(env, "team", "add", "temps", "gina"))
    ok(cli(env, "role", "bind", "viewer", "--user", "gina", "--cluster", "prod"))
    ok(cli(env, "role", "bind", "viewer", "--team", "temps", "--cluster", "prod"))

    declined = cli(env, "user", "delete", "gina", stdin="n\n")
    assert declined.returncode == 1
    assert "delete user gina" in declined.stdout
    assert platform.identity.get_user("gina").teams == ("temps",)  # nothing was deleted

    deleted = ok(cli(env, "user", "delete", "GINA", "--yes"))
    assert "deleted user gina: 1 role binding(s), 1 team membership(s), 0 session(s), 0 API token(s)" in (
        " ".join(deleted.split())
    )
    assert platform.identity.store.find_user("gina") is None
    refused(cli(env, "user", "delete", "gina", "--yes"), "no user named 'gina'", "pilothouse user list")

    assert "deleted team temps: 1 role binding(s), 0 membership(s)" in " ".join(
        ok(cli(env, "team", "delete", "temps", "--yes")).split()
    )
    assert all(b.subject != "temps" for b in platform.identity.list_bindings())
    refused(cli(env, "team", "delete", "temps", "--yes"), "no team named 'temps'")
