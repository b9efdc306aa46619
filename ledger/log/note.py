"""C2SP signed notes and tlog checkpoints (c2sp.org/signed-note, c2sp.org/tlog-checkpoint).

A checkpoint body is `<origin>\\n<size>\\n<base64 root>\\n`; a note appends a blank line and
one `— <name> <base64(keyid || signature)>` line per signature. Verifiers skip signatures
from keys they do not know, which is what lets keys rotate and witnesses cosign.

Parsing is as strict as the specs' text: a tree size is ASCII decimal with no leading zero
(``str.isdigit`` and ``int`` would take Unicode digits, ``+``, ``_`` and spaces), at most a
uint64; a key ID is exactly eight lowercase hex digits; key names have no Unicode space or
``+``; a note holds no ASCII control character but the newline; extension lines are non-empty.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from ledger.errors import NoteError
from ledger.keys import ed25519 as _ed25519

ALG_ED25519 = 0x01
SIG_PREFIX = "\u2014 "  # EM DASH and a space start every signature line
_MAX_NOTE_BYTES = 1 << 20
# [0-9], not \d, which matches any Unicode decimal digit; 20 digits hold every uint64, and
# the bound keeps int() from ever seeing a huge string.
_TREE_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
MAX_TREE_SIZE = 2**64 - 1  # tree sizes are uint64 everywhere in C2SP


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id: `SHA-256(name || 0x0A || 0x01 || pubkey)[:4]`."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


def check_key_name(name: str, what: str = "key name") -> None:
    """Note key names (a log's, a witness's) are non-empty, without spaces or '+'."""
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise NoteError(f"{what} {name!r} must be non-empty, without spaces or '+'")


def signature_line(name: str, key_id: bytes, signature: bytes) -> str:
    """One note signature line, `— <name> <base64(key id || signature)>\\n`."""
    return f"{SIG_PREFIX}{name} {base64.b64encode(key_id + signature).decode()}\n"


@dataclass(frozen=True)
class NoteVerifier:
    """A public key that can check one signer's lines in a note."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def encode(self) -> str:
        """The verifier key string `<name>+<hex keyid>+<base64(0x01 || pubkey)>`."""
        key = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{key}"

    @classmethod
    def parse(cls, text: str) -> NoteVerifier:
        # At most two splits: the base64 key material may itself contain "+".
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError("verifier key must be <name>+<hex keyid>+<base64 key>")
        name, hex_id, b64_key = parts
        check_key_name(name)
        # bytes.fromhex would also take spaces and capitals; the spec's hex is neither.
        if not _KEY_ID_HEX.fullmatch(hex_id):
            raise NoteError("verifier key id is not eight lowercase hex digits")
        try:
            raw = base64.b64decode(b64_key, validate=True)
        except binascii.Error:
            raise NoteError("verifier key has bad base64") from None
        claimed = bytes.fromhex(hex_id)
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("verifier key is not an Ed25519 key")
        verifier = cls(name, raw[1:])
        if claimed != verifier.key_id:
            raise NoteError("verifier key id does not match its name and key")
        return verifier


@dataclass(frozen=True)
class NoteSigner:
    name: str
    key: _ed25519.SigningKey

    def __post_init__(self) -> None:
        check_key_name(self.name)

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.key.public_key)

    def sign(self, body: str) -> str:
        """Return the signed note: body, blank line, one signature line."""
        if not body.endswith("\n"):
            raise NoteError("note body must end with a newline")
        signature = self.key.sign(body.encode())
        return f"{body}\n{signature_line(self.name, self.verifier.key_id, signature)}"


@dataclass(frozen=True)
class SignedNote:
    body: str
    signatures: list[tuple[str, bytes, bytes]]  # (name, keyid, signature)


def parse_note(text: str) -> SignedNote:
    if len(text.encode()) > _MAX_NOTE_BYTES:
        raise NoteError("note too large")
    if (control := _CONTROL.search(text)) is not None:
        raise NoteError(f"note holds the control character {control.group()!r}")
    body, sep, sigs = text.rpartition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise NoteError("note has no signature block")
    signatures = []
    for line in sigs[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise NoteError(f"malformed signature line {line!r}")
        name, _, blob = line[len(SIG_PREFIX) :].partition(" ")
        check_key_name(name)
        try:
            raw = base64.b64decode(blob, validate=True)
        except binascii.Error:
            raise NoteError("signature line is not base64") from None
        if len(raw) < 5:
            raise NoteError("signature line too short")
        signatures.append((name, raw[:4], raw[4:]))
    return SignedNote(body + "\n", signatures)


def open_note(text: str, verifiers: list[NoteVerifier]) -> SignedNote:
    """Parse a note and require a valid signature from at least one of `verifiers`.

    Signatures from unknown keys are ignored; a known key with a bad signature is an error,
    because it means the note was altered, not merely cosigned by a stranger.
    """
    note = parse_note(text)
    known = {(v.name, v.key_id): v for v in verifiers}
    verified = False
    for name, kid, signature in note.signatures:
        verifier = known.get((name, kid))
        if verifier is None:
            continue
        if not _ed25519.verify(verifier.public_key, note.body.encode(), signature):
            raise NoteError(f"signature by {name} does not verify")
        verified = True
    if not verified:
        raise NoteError("note carries no signature from a trusted key")
    return note


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root_hash).decode()}\n"

    @classmethod
    def parse_body(cls, body: str) -> Checkpoint:
        lines = body.split("\n")
        # Three lines and the final newline; extension lines are allowed by the spec and kept
        # out of our own checkpoints, so they are accepted here but ignored.
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("checkpoint body must have origin, size and root lines")
        origin, size_text, root_text = lines[0], lines[1], lines[2]
        if not origin:
            raise NoteError("checkpoint origin is empty")
        if not _TREE_SIZE.fullmatch(size_text) or int(size_text) > MAX_TREE_SIZE:
            raise NoteError("checkpoint size is not an ASCII decimal uint64 without leading zeros")
        if "" in lines[3:-1]:
            raise NoteError("checkpoint extension lines must be non-empty")
        try:
            root = base64.b64decode(root_text, validate=True)
        except binascii.Error:
            raise NoteError("checkpoint root is not base64") from None
        if len(root) != 32:
            raise NoteError("checkpoint root is not a SHA-256 hash")
        return cls(origin, int(size_text), root)


def open_checkpoint(text: str, verifier: NoteVerifier, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint note and return its contents."""
    checkpoint = Checkpoint.parse_body(open_note(text, [verifier]).body)
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(f"checkpoint is for origin {checkpoint.origin!r}, expected {origin!r}")
    return checkpoint
