"""Ed25519 primitives shared by envelopes, receipts and notes.

`cryptography` owns keys and their serialization; libsodium (through PyNaCl) does the
per-record sign and verify, because it is about twice as fast here and releases the GIL,
so a thread pool spreads a batch over every core.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import nacl.bindings
import nacl.exceptions
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


def derive_keyid(public_key: bytes) -> str:
    """The default DSSE keyid of a service key: lowercase hex SHA-256 of the raw key."""
    return hashlib.sha256(public_key).hexdigest()


class SigningKey:
    """An Ed25519 private key held in libsodium's expanded form for fast signing."""

    __slots__ = ("_secret", "public_key")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        seed = private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        self.public_key, self._secret = nacl.bindings.crypto_sign_seed_keypair(seed)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, message: bytes) -> bytes:
        signed: bytes = nacl.bindings.crypto_sign(message, self._secret)
        return signed[:SIGNATURE_SIZE]

    def private_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self._secret[:32])


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `message` under `public_key`."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        return False
    return True


def public_key_from_pem(data: bytes) -> bytes:
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_signing_key(path: Path) -> SigningKey:
    """Read a PKCS#8 PEM Ed25519 private key."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return SigningKey(key)


def save_signing_key(key: SigningKey, path: Path) -> None:
    """Write the key as PKCS#8 PEM, readable by its owner only, never overwriting a file."""
    pem = key.private_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: two `prov init` racing must not each write a different key.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
