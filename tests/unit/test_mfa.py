"""TOTP codes (±1 step, replays refused), recovery codes and passwords: computation only."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest

from pilothouse import errors
from pilothouse.identity import mfa, passwords

T0 = datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC)  # 10 s into a step
SECRET = mfa.new_totp_secret()


def code(moment: datetime) -> str:
    return pyotp.TOTP(SECRET).at(moment)


def test_a_secret_is_160_bits_of_base32_and_fresh_each_time() -> None:
    assert len(SECRET) == 32
    assert mfa.new_totp_secret() != SECRET
    pyotp.TOTP(SECRET).now()  # valid base32


def test_the_provisioning_uri_is_what_authenticator_apps_read() -> None:
    uri = mfa.provisioning_uri(SECRET, account="alice@example.com", issuer="Pilothouse")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    query = parse_qs(parts.query)
    assert query["secret"] == [SECRET]
    assert query["issuer"] == ["Pilothouse"]
    assert "alice" in parts.path


@pytest.mark.parametrize("offset", [-30, 0, 30])
def test_a_code_one_step_either_side_is_accepted(offset: int) -> None:
    match = mfa.match_step(SECRET, code(T0 + timedelta(seconds=offset)), now=T0, last_used_step=None)
    assert match.step == mfa.step_at(T0) + offset // 30


@pytest.mark.parametrize("offset", [-90, -60, 60, 90])
def test_a_code_two_steps_away_is_refused(offset: int) -> None:
    match = mfa.match_step(SECRET, code(T0 + timedelta(seconds=offset)), now=T0, last_used_step=None)
    assert not match.ok
    assert "wrong or out of date" in match.reason


def test_a_used_code_or_an_earlier_one_is_a_replay() -> None:
    now_code = code(T0)
    first = mfa.match_step(SECRET, now_code, now=T0, last_used_step=None)
    assert first.step is not None
    replay = mfa.match_step(SECRET, now_code, now=T0 + timedelta(seconds=5), last_used_step=first.step)
    assert not replay.ok
    assert "already used" in replay.reason
    earlier = mfa.match_step(SECRET, code(T0 - timedelta(seconds=30)), now=T0, last_used_step=first.step)
    assert not earlier.ok
    later = mfa.match_step(
        SECRET, code(T0 + timedelta(seconds=30)), now=T0 + timedelta(seconds=30), last_used_step=first.step
    )
    assert later.step == first.step + 1


@pytest.mark.parametrize("bad", ["", "12345", "1234567", "abcdef", "12 34 5x"])
def test_malformed_codes_are_refused_with_the_expected_shape(bad: str) -> None:
    match = mfa.match_step(SECRET, bad, now=T0, last_used_step=None)
    assert not match.ok
    assert "6 digits" in match.reason


def test_spaces_in_a_code_are_ignored() -> None:
    spaced = code(T0)[:3] + " " + code(T0)[3:]
    assert mfa.match_step(SECRET, spaced, now=T0, last_used_step=None).ok


def test_recovery_codes_are_distinct_and_their_digest_ignores_format() -> None:
    codes = mfa.new_recovery_codes()
    assert len(codes) == len(set(codes)) == 10
    one = codes[0]
    assert re.fullmatch(r"[a-z2-9]{4}(-[a-z2-9]{4}){3}", one)
    assert mfa.recovery_digest(one) == mfa.recovery_digest(one.upper().replace("-", " "))
    assert mfa.recovery_digest(one) != mfa.recovery_digest(codes[1])
    assert one not in mfa.recovery_digest(one)


def test_the_qr_code_is_an_svg_and_terminal_text() -> None:
    uri = mfa.provisioning_uri(SECRET, account="alice", issuer="Pilothouse")
    svg = mfa.qr_svg(uri)
    assert svg.startswith("<svg")
    assert svg.rstrip().endswith("</svg>")
    text = mfa.qr_text(uri)
    assert len(text.splitlines()) > 10
    assert "█" in text or "▀" in text


def test_passwords_are_argon2id_and_verified() -> None:
    hashed = passwords.hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert "correct horse" not in hashed
    assert passwords.verify(hashed, "correct horse battery")
    assert not passwords.verify(hashed, "correct horse batterY")
    assert not passwords.verify(None, "correct horse battery")
    assert not passwords.verify("not-a-hash", "correct horse battery")
    assert not passwords.verify(hashed, "x" * (passwords.MAX_LENGTH + 1))
    assert not passwords.needs_rehash(hashed)


@pytest.mark.parametrize("bad", ["Sh0rt!pw", "x" * (passwords.MAX_LENGTH + 1)])
def test_password_rules_refuse_without_echoing_the_password(bad: str) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        passwords.hash_password(bad)
    assert bad not in str(caught.value)
