"""The `add-checkpoint` wire format of C2SP tlog-witness (c2sp.org/tlog-witness).

A request body is `old <size>\\n`, zero to 63 base64 consistency-proof lines, a blank line,
then the signed checkpoint note. The answer is one or more cosignature lines (200), or the
witness's latest cosigned size as `<size>\\n` in `text/x.tlog.size` (409). Both sides use the
functions here, so the log's client and the witness cannot disagree on the format.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from ledger.errors import NoteError

ADD_CHECKPOINT_PATH = "/add-checkpoint"
SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_PROOF_LINES = 63
MAX_REQUEST_BYTES = 1 << 16
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """A parsed request: the size the log believes the witness holds, the proof, the note."""

    old_size: int
    proof: list[bytes]
    note: str


def _size(text: str, what: str) -> int:
    if not _SIZE.fullmatch(text) or int(text) > 2**64 - 1:
        raise NoteError(f"{what} is not an ASCII decimal uint64 without leading zeros")
    return int(text)


def encode_add_checkpoint(old_size: int, proof: list[bytes], note: str) -> bytes:
    if len(proof) > MAX_PROOF_LINES:
        raise NoteError(f"a consistency proof of {len(proof)} hashes is longer than 63")
    lines = [f"old {old_size}\n"] + [base64.b64encode(h).decode() + "\n" for h in proof]
    return ("".join(lines) + "\n" + note).encode()


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parse a request body; any deviation from the format is a `NoteError` (400)."""
    if len(body) > MAX_REQUEST_BYTES:
        raise NoteError("the add-checkpoint request is too large")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise NoteError("the add-checkpoint request is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise NoteError("the add-checkpoint request has no blank line before the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        raise NoteError("the add-checkpoint request does not start with an 'old <size>' line")
    old_size = _size(lines[0][4:], "the old size")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise NoteError("the consistency proof has more than 63 lines")
    proof = []
    for line in lines[1:]:
        try:
            node = base64.b64decode(line, validate=True)
        except binascii.Error:
            raise NoteError("a consistency proof line is not base64") from None
        if len(node) != 32:
            raise NoteError("a consistency proof line is not a SHA-256 hash")
        proof.append(node)
    return AddCheckpoint(old_size, proof, note)


def parse_size_answer(text: str) -> int:
    """The body of a 409: the witness's latest cosigned size and a newline."""
    if not text.endswith("\n"):
        raise NoteError("a witness's size answer ends with a newline")
    return _size(text[:-1], "the witness's size answer")
