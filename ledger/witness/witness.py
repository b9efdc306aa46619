"""The witness's logic (C2SP tlog-witness, c2sp.org/tlog-witness), without HTTP.

A witness follows a list of logs, each named by its origin and trusted under one or more
note verifier keys (several: the log rotates its key). For each it keeps the latest
checkpoint it cosigned (`ledger.witness.state`), and cosigns an `add-checkpoint` request
only when the checkpoint extends that one. The checks, in the spec's order, each with the
spec's status:

1. the body is `old <size>`, proof lines, a blank line and a checkpoint note (else 400);
2. the origin is one the witness follows (else 404);
3. a signature by a trusted key of that origin verifies, and none by such a key fails
   (else 403); signatures by unknown keys are ignored;
4. the old size is at most the checkpoint's size (else 400; a checkpoint smaller than the
   one the witness holds is named a rollback);
5. the old size is the size the witness last cosigned, 0 if none (else 409, carrying it);
6. a checkpoint of size 0 has the empty tree's root; from size 0 the proof is empty; at the
   same size the root is the same; otherwise the RFC 9162 consistency proof verifies from
   the stored root to the checkpoint's (else 422).

Steps 4 to 6 and the update run as one step under the state's writer lock, so two requests
from one size can never both be cosigned. A checkpoint refused at steps 4 or 6 that the log
validly signed is kept as evidence. The answer is one Ed25519 `cosignature/v1` line over the
checkpoint body, timestamped, persisted before it is returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ledger.errors import (
    NoteError,
    ProvError,
    WitnessBadRequest,
    WitnessInconsistent,
    WitnessSizeConflict,
    WitnessUnknownLog,
    WitnessUntrusted,
)
from ledger.keys import ed25519 as _ed25519
from ledger.log.merkle import EMPTY_ROOT, verify_consistency
from ledger.log.note import Checkpoint, NoteVerifier, parse_note, signature_line
from ledger.witness.cosignature import CosignatureSigner
from ledger.witness.protocol import AddCheckpoint, parse_add_checkpoint
from ledger.witness.state import Accept, Decision, Latest, Refuse, Refused, WitnessState


def parse_followed_log(text: str) -> tuple[str, NoteVerifier]:
    """One `--log` value: a log's note verifier key `<name>+<id>+<key>`, whose origin is the
    key's name, or `ORIGIN=<vkey>` for a log whose origin is not its key's name.

    A vkey may itself hold `=` (base64 padding), so the whole text is tried as a vkey first;
    only when it is not one does the first `=` separate the origin.
    """
    text = text.strip()
    try:
        verifier = NoteVerifier.parse(text)
    except NoteError as whole_error:
        origin, sep, vkey = text.partition("=")
        if not sep:
            raise NoteError(f"{text!r} is not a log's verifier key: {whole_error}") from None
        if not origin:
            raise NoteError(f"{text!r}: the origin before '=' is empty") from None
        return origin, NoteVerifier.parse(vkey)
    return verifier.name, verifier


@dataclass(frozen=True)
class WitnessConfig:
    """Who the witness is (its cosigning key) and which logs it follows, under which keys."""

    signer: CosignatureSigner
    logs: Mapping[str, tuple[NoteVerifier, ...]]

    def __post_init__(self) -> None:
        if not self.logs:
            raise NoteError("a witness follows at least one log")
        for origin, keys in self.logs.items():
            if not origin or "\n" in origin:
                raise NoteError(f"{origin!r} is not a checkpoint origin line")
            if not keys:
                raise NoteError(f"{origin}: no verifier key for this log")

    @classmethod
    def from_options(cls, signer: CosignatureSigner, logs: list[str]) -> WitnessConfig:
        """From `--log` values (`parse_followed_log`); one origin may be given several keys."""
        followed: dict[str, list[NoteVerifier]] = {}
        for text in logs:
            origin, verifier = parse_followed_log(text)
            keys = followed.setdefault(origin, [])
            if verifier not in keys:
                keys.append(verifier)
        return cls(signer, {origin: tuple(keys) for origin, keys in followed.items()})


@dataclass(frozen=True, slots=True)
class _Request:
    """A request that passed the stateless checks (steps 1 to 3)."""

    parsed: AddCheckpoint
    body: str
    checkpoint: Checkpoint
    log_lines: tuple[str, ...]  # the log's signatures that verified, as note lines


class Witness:
    """The witness: `add_checkpoint` cosigns or refuses; `checkpoint` is the monitoring read.

    Safe to call from many threads and processes at once: every call is its own SQLite
    transaction on the state file.
    """

    def __init__(self, config: WitnessConfig, state: WitnessState) -> None:
        self.config = config
        self.state = state

    @property
    def name(self) -> str:
        return self.config.signer.name

    def add_checkpoint(self, body: bytes, now_s: int) -> str:
        """The cosignature line(s) for a valid request, after the state holds the checkpoint;
        otherwise the refusal: `WitnessBadRequest` (400), `WitnessUntrusted` (403),
        `WitnessUnknownLog` (404), `WitnessSizeConflict` (409, with the stored size) or
        `WitnessInconsistent` (422). `now_s` is the cosignature's time, POSIX seconds."""
        request = self._checked(body)
        cosigned: list[str] = []

        def decide(latest: Latest | None) -> Decision:
            line, decision = self._decide(request, latest, now_s)
            cosigned.append(line)
            return decision

        decision = self.state.advance(request.checkpoint.origin, decide)
        if isinstance(decision, Refuse):
            raise decision.error
        return cosigned[-1]

    def checkpoint(self, origin_hash: str) -> str | None:
        """The latest cosigned checkpoint of the origin with this lowercase hex SHA-256,
        with the log's verified signatures and the witness's cosignature; None if none."""
        latest = self.state.latest_by_hash(origin_hash)
        return None if latest is None else latest.note

    # --- steps 1 to 3: no state needed ---------------------------------------------------

    def _checked(self, body: bytes) -> _Request:
        try:
            parsed = parse_add_checkpoint(body)
            note = parse_note(parsed.note)
            checkpoint = Checkpoint.parse_body(note.body)
        except NoteError as error:
            raise WitnessBadRequest(str(error)) from None
        keys = self.config.logs.get(checkpoint.origin)
        if keys is None:
            raise WitnessUnknownLog(f"this witness follows no log of origin {checkpoint.origin!r}")
        trusted = {(key.name, key.key_id): key for key in keys}
        lines: list[str] = []
        message = note.body.encode()
        for name, key_id, signature in note.signatures:
            key = trusted.get((name, key_id))
            if key is None:
                continue  # another key's signature (a cosignature, say): ignored, as specified
            if not _ed25519.verify(key.public_key, message, signature):
                raise WitnessUntrusted(
                    f"the signature by {name} (key id {key_id.hex()}) does not verify"
                )
            line = signature_line(name, key_id, signature)
            if line not in lines:
                lines.append(line)
        if not lines:
            raise WitnessUntrusted(
                f"the checkpoint carries no signature by a key trusted for {checkpoint.origin!r}"
            )
        return _Request(parsed, note.body, checkpoint, tuple(lines))

    # --- steps 4 to 6 and the update, under the state's lock -------------------------------

    def _decide(self, request: _Request, latest: Latest | None, now_s: int) -> tuple[str, Decision]:
        """The cosignature line and what to store, or the refusal and its evidence."""
        checkpoint = request.checkpoint
        refusal = _refusal(request, latest)
        if refusal is not None:
            error, is_evidence = refusal
            if not is_evidence:
                return "", Refuse(error)
            evidence = Refused(
                checkpoint.origin,
                request.parsed.old_size,
                checkpoint.size,
                checkpoint.root_hash,
                tuple(request.parsed.proof),
                request.body + "\n" + "".join(request.log_lines),
                STATUS_OF[type(error)],
                error.detail,
                now_s,
                now_s,
            )
            return "", Refuse(error, evidence)
        # Never earlier than the last cosignature for this log: a later statement of "the
        # largest tree as of time t" must not carry an older t, whatever the clock did.
        timestamp = max(now_s, latest.cosigned_at if latest is not None else 0)
        try:
            line = self.config.signer.cosign(request.body, timestamp)
        except NoteError as error:
            # Only a clock before 1970 gets here: the spec forbids a zero timestamp.
            raise WitnessBadRequest(f"cannot cosign: {error}") from None
        note = request.body + "\n" + "".join(request.log_lines) + line
        latest = Latest(checkpoint.origin, checkpoint.size, checkpoint.root_hash, note, timestamp)
        return line, Accept(latest)


# The statuses of the refusals kept as evidence (the HTTP layer maps kinds the same way).
STATUS_OF: dict[type[ProvError], int] = {WitnessBadRequest: 400, WitnessInconsistent: 422}


def _refusal(request: _Request, latest: Latest | None) -> tuple[ProvError, bool] | None:
    """Steps 4 to 6 against the latest cosigned checkpoint: the refusal, and whether the
    checkpoint is evidence of a fork or rollback; None when it extends the latest."""
    old, size = request.parsed.old_size, request.checkpoint.size
    origin = request.checkpoint.origin
    held_size = latest.size if latest is not None else 0
    held_root = latest.root_hash if latest is not None else EMPTY_ROOT
    if old > size:
        if size < held_size:
            rollback = WitnessBadRequest(
                f"rollback: the checkpoint's size {size} is below the size {held_size} this "
                f"witness cosigned for {origin!r} (old size {old})"
            )
            return rollback, True
        return WitnessBadRequest(f"the old size {old} is above the checkpoint's size {size}"), False
    if old != held_size:
        conflict = WitnessSizeConflict(
            f"the old size is {old}; the latest checkpoint this witness cosigned for {origin!r} "
            f"has size {held_size}",
            size=held_size,
        )
        return conflict, False
    inconsistency = _inconsistency(request, held_root)
    if inconsistency is None:
        return None
    return WitnessInconsistent(f"{inconsistency} (log {origin!r})"), True


def _inconsistency(request: _Request, held_root: bytes) -> str | None:
    """Why the checkpoint does not extend the held tree of the request's old size, if not."""
    old, proof = request.parsed.old_size, request.parsed.proof
    size, root = request.checkpoint.size, request.checkpoint.root_hash
    if size == 0 and root != EMPTY_ROOT:
        return "a checkpoint of size 0 must have the empty tree's root"
    if old == 0 and proof:
        return "from old size 0 the consistency proof must be empty"
    if old == size and root != held_root:
        return (
            f"fork: the checkpoint's root at size {size} differs from the root this witness "
            "cosigned at that size"
        )
    if not verify_consistency(old, size, held_root, root, proof):
        return (
            f"the consistency proof from size {old} to {size} does not verify against the root "
            "this witness cosigned: the log forked, or the proof is wrong"
        )
    return None
