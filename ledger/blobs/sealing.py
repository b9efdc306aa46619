"""Encryption at rest of blob bytes: AES-256-GCM under a data key, streamed.

A sealed object is `nonce (12 bytes) || ciphertext || tag (16 bytes)`. The associated data
binds it to its tenant and digest, so that an object copied under another name, or into
another tenant's store, fails to open instead of passing for that blob. Streaming (the
`cryptography` GCM context rather than AESGCM's one-shot calls) keeps a large upload from
being whole in memory twice.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ledger.errors import BlobUnreadable

NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
OVERHEAD: Final = NONCE_BYTES + TAG_BYTES
KEY_BYTES: Final = 32


def associated_data(tenant: str, digest: str) -> bytes:
    return f"prov blob\n{tenant}\n{digest}".encode()


def seal(key: bytes, chunks: Iterable[bytes], aad: bytes) -> Iterator[bytes]:
    """The sealed object of the plaintext `chunks`, as chunks (nonce first, tag last)."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    yield nonce
    for chunk in chunks:
        if chunk:
            yield encryptor.update(chunk)
    yield encryptor.finalize() + encryptor.tag


def seal_bytes(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    return b"".join(seal(key, [plaintext], aad))


def unseal(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    """The plaintext of a sealed object; `BlobUnreadable` when it does not authenticate
    (altered, truncated, or not this blob's)."""
    if len(sealed) < OVERHEAD:
        raise BlobUnreadable("the stored object is shorter than a nonce and a tag")
    nonce, body, tag = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:-TAG_BYTES], sealed[-TAG_BYTES:]
    decryptor = Cipher(algorithms.AES(key), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(aad)
    try:
        return decryptor.update(body) + decryptor.finalize()
    except InvalidTag:
        raise BlobUnreadable("the stored object does not authenticate under its key") from None
