"""Password hashing and the password rules: ``argon2-cffi`` (Argon2id) does the hashing.

Only the encoded Argon2id hash (algorithm, parameters, salt and digest in one
string) is stored. ``verify`` runs the same work for an unknown user against
a fixed dummy hash, so response time does not tell which user names exist.
Hashes made with older parameters are upgraded at the next successful login
(``needs_rehash``).
"""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from pilothouse import errors

MIN_LENGTH = 10
MAX_LENGTH = 1024  # hashing cost grows with the input; nobody types more

_hasher = PasswordHasher()  # Argon2id, RFC 9106 low-memory profile (t=3, m=64 MiB, p=4)


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when there is no user (made on first use: it costs a hash)."""
    return _hasher.hash("pilothouse-dummy-password-for-unknown-users")


def check_password_rules(password: str) -> None:
    """Refuse a password that is too short or too long (``InvalidInput``, never echoing it)."""
    if len(password) < MIN_LENGTH:
        raise errors.InvalidInput(
            f"the password is too short (at least {MIN_LENGTH} characters)",
            hint="choose a longer password or a passphrase",
        )
    if len(password) > MAX_LENGTH:
        raise errors.InvalidInput(
            f"the password is longer than {MAX_LENGTH} characters", hint="choose a shorter one"
        )


def hash_password(password: str) -> str:
    check_password_rules(password)
    return _hasher.hash(password)


def verify(encoded: str | None, password: str) -> bool:
    """Whether ``password`` matches ``encoded``; ``None`` (no such user, no password) never matches."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(encoded or _dummy_hash(), password) and encoded is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(encoded: str) -> bool:
    return _hasher.check_needs_rehash(encoded)
