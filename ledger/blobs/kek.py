"""The key-encryption key: one AES-256 key in a file beside the ledger key, never in the
database, that wraps every subject's data key.

A database backup therefore holds no key that opens a blob, and neither does the key
directory alone; a KMS can take this file's place later (it only has to wrap and unwrap).
The file holds the key as base64 on one line and is created readable by its owner only.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.errors import LedgerNotInitialized, ProvError

KEK_NAME: Final = "prov-blobs.kek"
_NONCE_BYTES: Final = 12


class KeyUnwrapFailed(ProvError):
    """A stored data key does not unwrap under the key-encryption key: the KEK file is not
    the one that wrapped it, or the key file was altered."""

    kind = "key-unwrap-failed"
    title = "Data key does not unwrap"


def default_kek_path(ledger_key_path: Path) -> Path:
    """Where the KEK lives unless configured: next to the ledger key."""
    return ledger_key_path.with_name(KEK_NAME)


def ensure_kek(path: Path) -> None:
    """Create the KEK file unless it exists (`prov init`)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = base64.b64encode(secrets.token_bytes(32)) + b"\n"
    # O_EXCL: two processes initializing at once end with one key, not one each.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(descriptor, "wb") as file:
        file.write(encoded)
        file.flush()
        os.fsync(file.fileno())


def load_kek(path: Path) -> bytes:
    try:
        text = path.read_bytes().strip()
    except FileNotFoundError:
        raise LedgerNotInitialized(
            f"key-encryption key {path} is missing; run `prov init`"
        ) from None
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error:
        key = b""
    if len(key) != 32:
        raise LedgerNotInitialized(f"{path} does not hold a base64 AES-256 key")
    return key


def wrap(kek: bytes, data_key: bytes, label: bytes) -> bytes:
    """`data_key` encrypted under the KEK, bound to `label` (whose key it is)."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, data_key, label)


def unwrap(kek: bytes, wrapped: bytes, label: bytes) -> bytes:
    try:
        return AESGCM(kek).decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], label)
    except InvalidTag:
        raise KeyUnwrapFailed(
            "a subject data key does not unwrap under the key-encryption key "
            "(PROV_KEK_FILE is not the key that wrapped it, or the key file was altered)"
        ) from None
