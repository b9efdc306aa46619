"""One `add-checkpoint` exchange with one witness, and what its answer means for the log.

The witness's answer is checked here, never trusted: a 200 whose lines do not verify under
the witness's configured key is a refusal, and a 409's size is read as the spec writes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from ledger.errors import NoteError
from ledger.witness.cosignature import verified_cosignatures
from ledger.witness.cosigned import ReceivedCosignature
from ledger.witness.protocol import ADD_CHECKPOINT_PATH, encode_add_checkpoint, parse_size_answer
from service.witnessing.config import WitnessEndpoint

_MAX_ANSWER_BYTES = 1 << 16


@dataclass(frozen=True, slots=True)
class Cosigned:
    cosignatures: list[ReceivedCosignature]


@dataclass(frozen=True, slots=True)
class Conflict:
    """The witness holds another size for this log (409): the next request starts there."""

    size: int


@dataclass(frozen=True, slots=True)
class Refused:
    """The witness would not cosign (4xx, or a 200 that does not verify), or is failing."""

    status: int
    detail: str


@dataclass(frozen=True, slots=True)
class Unreachable:
    detail: str


Outcome = Cosigned | Conflict | Refused | Unreachable


def request_cosignature(
    http: httpx.Client, witness: WitnessEndpoint, old_size: int, proof: list[bytes], note: str
) -> Outcome:
    body = encode_add_checkpoint(old_size, proof, note)
    try:
        status, content = _post(http, witness.url + ADD_CHECKPOINT_PATH, body)
    except httpx.HTTPError as error:
        return Unreachable(f"{type(error).__name__}: {error}")
    text = content.decode(errors="replace")
    if status == 409:
        try:
            return Conflict(parse_size_answer(text))
        except NoteError as error:
            return Refused(409, f"a 409 without a size: {error}")
    if status != 200:
        return Refused(status, text.strip()[:300])
    return _cosigned(witness, note, text)


def _post(http: httpx.Client, url: str, body: bytes) -> tuple[int, bytes]:
    """POST, reading at most `_MAX_ANSWER_BYTES` of the answer: a witness that sends more
    is cut off, never held in memory whole."""
    with http.stream("POST", url, content=body) as answer:
        read = bytearray()
        for chunk in answer.iter_bytes():
            read += chunk
            if len(read) >= _MAX_ANSWER_BYTES:
                break
        return answer.status_code, bytes(read[:_MAX_ANSWER_BYTES])


def _cosigned(witness: WitnessEndpoint, note: str, text: str) -> Outcome:
    """The witness's lines that verify as its cosignature on `note`; others are ignored."""
    kept = []
    for line in text.splitlines(keepends=True):
        try:
            found = verified_cosignatures(note + line, [witness.verifier])
        except NoteError:
            found = []
        if found:
            kept.append(ReceivedCosignature(witness.name, line, found[0].timestamp))
    if not kept:
        return Refused(200, "the answer holds no cosignature that verifies under its key")
    return Cosigned(kept[:1])
