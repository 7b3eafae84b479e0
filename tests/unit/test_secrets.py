"""Tests for pilothouse.store.secrets: sealing bound to (owner, name), and the key file."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from pilothouse import errors
from pilothouse.store import secrets

OWNER = "cluster:0123456789abcdef0123456789abcdef"
PLAINTEXT = b"apiVersion: v1\nkind: Config\nusers: [{name: admin, user: {token: hunter2}}]\n"


@pytest.fixture
def box() -> secrets.SecretBox:
    return secrets.SecretBox(Fernet.generate_key())


@pytest.mark.parametrize("plaintext", [PLAINTEXT, b"", b"\x00\xff" * 64])
def test_seal_then_open_returns_the_plaintext(box: secrets.SecretBox, plaintext: bytes) -> None:
    sealed = box.seal(OWNER, "kubeconfig", plaintext)

    assert box.open(OWNER, "kubeconfig", sealed) == plaintext


def test_ciphertext_does_not_contain_the_plaintext_and_is_fresh_each_time(box: secrets.SecretBox) -> None:
    first = box.seal(OWNER, "kubeconfig", PLAINTEXT)
    second = box.seal(OWNER, "kubeconfig", PLAINTEXT)

    assert b"hunter2" not in first
    assert PLAINTEXT not in first
    assert first != second


@pytest.mark.parametrize(
    ("owner", "name"),
    [
        ("cluster:ffffffffffffffffffffffffffffffff", "kubeconfig"),  # another owner
        (OWNER, "admin-key"),  # another secret of the same owner
        (OWNER, "kubeconfi"),  # a prefix of the name
        (OWNER[:-1], "kubeconfig"),  # a prefix of the owner
    ],
)
def test_open_with_another_binding_raises(box: secrets.SecretBox, owner: str, name: str) -> None:
    sealed = box.seal(OWNER, "kubeconfig", PLAINTEXT)

    with pytest.raises(errors.SecretKeyError, match="bound to another owner"):
        box.open(owner, name, sealed)


def test_open_with_another_key_raises(box: secrets.SecretBox) -> None:
    sealed = box.seal(OWNER, "kubeconfig", PLAINTEXT)
    other = secrets.SecretBox(Fernet.generate_key())

    with pytest.raises(errors.SecretKeyError, match="cannot be decrypted") as caught:
        other.open(OWNER, "kubeconfig", sealed)
    assert caught.value.code == "secret_key_error"
    assert "hunter2" not in str(caught.value)


def test_open_of_a_tampered_ciphertext_raises(box: secrets.SecretBox) -> None:
    sealed = bytearray(box.seal(OWNER, "kubeconfig", PLAINTEXT))
    sealed[-10] ^= 0x01

    with pytest.raises(errors.SecretKeyError):
        box.open(OWNER, "kubeconfig", bytes(sealed))


def test_key_file_is_created_0600_in_a_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "config" / "pilothouse" / "secret.key"

    key = secrets.load_or_create_key(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes().strip() == key
    Fernet(key)  # a valid key: raises otherwise


def test_loading_twice_returns_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"

    first = secrets.load_or_create_key(path)
    second = secrets.load_or_create_key(path)

    assert first == second
    sealed = secrets.SecretBox.from_file(path).seal(OWNER, "kubeconfig", PLAINTEXT)
    assert secrets.SecretBox.from_file(path).open(OWNER, "kubeconfig", sealed) == PLAINTEXT


def test_each_new_key_file_gets_its_own_key(tmp_path: Path) -> None:
    assert secrets.load_or_create_key(tmp_path / "a.key") != secrets.load_or_create_key(tmp_path / "b.key")


@pytest.mark.parametrize(
    "content",
    [b"", b"not a key\n", b"\xff\xfe\x00garbage", base64.urlsafe_b64encode(bytes(24))],
    ids=["empty", "text", "binary", "short-key"],
)
def test_a_corrupt_key_file_raises_and_is_left_alone(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "secret.key"
    path.write_bytes(content)

    with pytest.raises(errors.SecretKeyError, match="not a valid Fernet key") as caught:
        secrets.load_or_create_key(path)
    assert "restore the original key file" in caught.value.hint
    assert path.read_bytes() == content
