"""TOTP multi-factor codes and single-use recovery codes: computation only, no storage.

``pyotp`` computes RFC 6238 codes (SHA-1, 6 digits, 30 s steps, what every
authenticator app expects); ``qrcode`` draws the enrolment URI as SVG or as
terminal text. This module does no I/O: ``store.identity`` keeps the secret
(encrypted with ``SecretBox``), the last accepted step and the recovery code
digests, and ``identity.accounts`` ties them together.

Replay protection: ``match_step`` returns the time step a code belongs to
(within ±``window`` steps of now) and refuses any step at or before the last
one accepted, so a code — even one still inside its 90-second window — works
once. The store then advances the last step with a conditional update, so two
concurrent logins with the same code cannot both win.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

import pyotp
import qrcode
import qrcode.image.svg

STEP_SECONDS = 30
DIGITS = 6
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i look-alikes
_RECOVERY_LENGTH = 16  # ≈ 79 bits: a fast digest is enough, as for tokens


def new_totp_secret() -> str:
    """A fresh base32 secret (160 bits, RFC 4226's recommendation)."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app scans."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=quote(account, safe="@._-"), issuer_name=issuer
    )


def step_at(moment: datetime) -> int:
    return int(moment.timestamp()) // STEP_SECONDS


def code_at(secret: str, step: int) -> str:
    """The code of ``step`` (what an authenticator shows during that step)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step)


@dataclass(frozen=True)
class StepMatch:
    step: int | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.step is not None


def match_step(
    secret: str, code: str, *, now: datetime, last_used_step: int | None, window: int = 1
) -> StepMatch:
    """The step ``code`` is valid for within ±``window`` steps of ``now``, unless already used."""
    candidate = code.strip().replace(" ", "")
    if len(candidate) != DIGITS or not candidate.isdigit():
        return StepMatch(None, f"a TOTP code is {DIGITS} digits")
    current = step_at(now)
    matched = None
    for step in range(current - window, current + window + 1):
        if hmac.compare_digest(code_at(secret, step), candidate):
            matched = step
    if matched is None:
        return StepMatch(None, "the TOTP code is wrong or out of date")
    if last_used_step is not None and matched <= last_used_step:
        return StepMatch(None, "the TOTP code was already used; wait for the next one")
    return StepMatch(matched)


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """Fresh recovery codes, shown once, formatted ``xxxx-xxxx-xxxx-xxxx``."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        codes.append("-".join(raw[i : i + 4] for i in range(0, _RECOVERY_LENGTH, 4)))
    return codes


def normalise_recovery_code(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def recovery_digest(code: str) -> str:
    """What is stored of a recovery code: SHA-256 of its normalised form (the code has ~79 random bits)."""
    return hashlib.sha256(b"pilothouse-recovery\x00" + normalise_recovery_code(code).encode()).hexdigest()


def _qr(uri: str) -> qrcode.QRCode:
    code = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(uri)
    code.make(fit=True)
    return code


def qr_svg(uri: str) -> str:
    """The URI as an SVG QR code (for a web page)."""
    image = _qr(uri).make_image(image_factory=qrcode.image.svg.SvgPathImage)
    return str(image.to_string(encoding="unicode"))


def qr_text(uri: str) -> str:
    """The URI as a QR code drawn with block characters (for a terminal)."""
    out = io.StringIO()
    _qr(uri).print_ascii(out=out, invert=True)
    return out.getvalue()
