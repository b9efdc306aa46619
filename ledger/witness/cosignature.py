"""C2SP tlog-cosignature, Ed25519 `cosignature/v1` (c2sp.org/tlog-cosignature).

A cosignature is a note signature line whose key id is
`SHA-256(<name> || 0x0A || 0x04 || public key)[:4]` and whose signature bytes are an 8-byte
big-endian POSIX timestamp followed by an Ed25519 signature over

    cosignature/v1
    time <timestamp>
    <the whole checkpoint body>

The type byte 0x04 keeps a witness key from being mistaken for a log key (0x01), so a log
signature line can never pass as a cosignature or the other way round. A verifier key is
`<name>+<hex key id>+<base64(0x04 || public key)>`, as C2SP's vkeys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

from ledger.errors import NoteError
from ledger.keys import ed25519 as _ed25519
from ledger.log.note import SIG_PREFIX, NoteVerifier, check_key_name, parse_note, signature_line

ALG_COSIGNATURE_V1 = 0x04
_HEADER = "cosignature/v1\n"
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")
# A timestamp is a u64 that must not exceed 2^63 - 1 (the spec's bound).
MAX_TIMESTAMP = 2**63 - 1
_SIGNATURE_BYTES = 8 + _ed25519.SIGNATURE_SIZE


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id of an Ed25519 cosigner: the 0x04 type byte, not the log's 0x01."""
    return hashlib.sha256(
        name.encode() + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public_key
    ).digest()[:4]


def cosigned_message(body: str, timestamp: int) -> bytes:
    """What the witness signs: the header line, the time line, then the checkpoint body."""
    if not body.endswith("\n"):
        raise NoteError("a cosigned checkpoint body ends with a newline")
    if not 0 < timestamp <= MAX_TIMESTAMP:
        raise NoteError("a cosignature's timestamp is a positive POSIX time below 2^63")
    return f"{_HEADER}time {timestamp}\n{body}".encode()


def _check_name(name: str) -> None:
    check_key_name(name, "witness name")


@dataclass(frozen=True)
class CosignatureVerifier:
    """A witness's public key: checks its cosignature lines on a checkpoint."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.public_key) != _ed25519.PUBLIC_KEY_SIZE:
            raise NoteError("a witness key is a 32-byte Ed25519 public key")

    @property
    def key_id(self) -> bytes:
        return cosigner_key_id(self.name, self.public_key)

    def encode(self) -> str:
        """The verifier key string `<name>+<hex key id>+<base64(0x04 || key)>`."""
        key = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{key}"

    @classmethod
    def parse(cls, text: str) -> CosignatureVerifier:
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError("a witness key is <name>+<hex key id>+<base64 key>")
        name, hex_id, b64_key = parts
        _check_name(name)
        if not _KEY_ID_HEX.fullmatch(hex_id):
            raise NoteError("a witness key's id is not eight lowercase hex digits")
        try:
            raw = base64.b64decode(b64_key, validate=True)
        except binascii.Error:
            raise NoteError("a witness key has bad base64") from None
        if len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
            raise NoteError(
                f"{name}: not an Ed25519 cosignature/v1 key (type byte 0x04); "
                "a log's key (0x01) cannot stand for a witness"
            )
        verifier = cls(name, raw[1:])
        if bytes.fromhex(hex_id) != verifier.key_id:
            raise NoteError(f"{name}: the key id does not match the name and key")
        return verifier

    def timestamp_of(self, body: str, signature: bytes) -> int | None:
        """The cosignature's timestamp if `signature` (timestamp || Ed25519) verifies."""
        if len(signature) != _SIGNATURE_BYTES:
            return None
        (timestamp,) = struct.unpack(">Q", signature[:8])
        if not 0 < timestamp <= MAX_TIMESTAMP:
            return None
        message = cosigned_message(body, timestamp)
        if not _ed25519.verify(self.public_key, message, signature[8:]):
            return None
        return int(timestamp)


@dataclass(frozen=True)
class CosignatureSigner:
    """A witness's private key."""

    name: str
    key: _ed25519.SigningKey

    def __post_init__(self) -> None:
        _check_name(self.name)

    @property
    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self.name, self.key.public_key)

    def cosign(self, body: str, timestamp: int) -> str:
        """One signature line, `— <name> <base64(key id || timestamp || signature)>\\n`."""
        signature = self.key.sign(cosigned_message(body, timestamp))
        stamped = struct.pack(">Q", timestamp) + signature
        return signature_line(self.name, self.verifier.key_id, stamped)


@dataclass(frozen=True, slots=True)
class Cosigned:
    """A verified cosignature: which witness, and when it says it cosigned."""

    name: str
    key_id: bytes
    timestamp: int


def verified_cosignatures(note: str, verifiers: list[CosignatureVerifier]) -> list[Cosigned]:
    """The cosignatures on `note` by `verifiers` that verify; unknown keys are ignored.

    A line naming a known witness (name and key id) whose signature does not verify is an
    error, as in signed-note: the note was altered, not merely cosigned by a stranger.
    """
    parsed = parse_note(note)
    known = {(v.name, v.key_id): v for v in verifiers}
    found: dict[tuple[str, bytes], Cosigned] = {}
    for name, kid, signature in parsed.signatures:
        verifier = known.get((name, kid))
        if verifier is None:
            continue
        timestamp = verifier.timestamp_of(parsed.body, signature)
        if timestamp is None:
            raise NoteError(f"the cosignature by {name} does not verify")
        found[(name, kid)] = Cosigned(name, kid, timestamp)
    return list(found.values())


def signature_lines(note: str) -> list[str]:
    """The note's signature lines, each with its newline."""
    _, sep, block = note.rpartition("\n\n")
    if not sep:
        raise NoteError("note has no signature block")
    return [line + "\n" for line in block.split("\n") if line]


def add_signature_lines(note: str, lines: list[str]) -> str:
    """`note` with `lines` added after its own, each line once, in the order given."""
    present = set(signature_lines(note))
    extra = []
    for line in lines:
        if not line.startswith(SIG_PREFIX) or not line.endswith("\n") or "\n" in line[:-1]:
            raise NoteError(f"not a note signature line: {line!r}")
        if line not in present:
            present.add(line)
            extra.append(line)
    return note + "".join(extra)


def cosigner_names(note: str, log_verifier: NoteVerifier) -> list[str]:
    """The names on `note`'s signature lines other than the log's own key, sorted: who the
    note says cosigned it (verified only against a witness policy's keys)."""
    own = (log_verifier.name, log_verifier.key_id)
    return sorted(
        {name for name, key_id, _ in parse_note(note).signatures if (name, key_id) != own}
    )
