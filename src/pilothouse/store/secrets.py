"""Encryption at rest for secrets kept in the store.

``cryptography``'s Fernet (AES-128-CBC + HMAC-SHA256) does the work. The key
lives in a file outside the database (``Settings.effective_secret_key_file``),
created with mode 0600 on first use; a database copied without it is useless.
Each ciphertext is bound to its owner and name, so a row swapped for another
row's ciphertext fails to decrypt instead of yielding the wrong secret.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from pilothouse import errors


def load_or_create_key(path: Path) -> bytes:
    """Return the key in ``path``; create it (0600, parent 0700) when absent."""
    if path.exists():
        key = path.read_bytes().strip()
        try:
            Fernet(key)
        except ValueError:
            raise errors.SecretKeyError(
                f"the secret key file {path} is not a valid Fernet key",
                hint="restore the original key file; without it stored secrets cannot be read",
            ) from None
        return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    return key


class SecretBox:
    """Encrypts and decrypts secrets bound to an ``(owner, name)`` pair."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_file(cls, path: Path) -> SecretBox:
        return cls(load_or_create_key(path))

    @staticmethod
    def _binding(owner: str, name: str) -> bytes:
        return f"{owner}\x00{name}\x00".encode()

    def seal(self, owner: str, name: str, plaintext: bytes) -> bytes:
        return self._fernet.encrypt(self._binding(owner, name) + plaintext)

    def open(self, owner: str, name: str, ciphertext: bytes) -> bytes:
        try:
            data = self._fernet.decrypt(ciphertext)
        except InvalidToken:
            raise errors.SecretKeyError(
                f"secret {name!r} of {owner} cannot be decrypted with the configured key",
                hint="check PILOTHOUSE_SECRET_KEY_FILE points at the key this database was written with",
            ) from None
        binding = self._binding(owner, name)
        if not data.startswith(binding):
            raise errors.SecretKeyError(
                f"secret {name!r} of {owner} is bound to another owner",
                hint="the store was tampered with; restore it from a backup",
            )
        return data[len(binding) :]
