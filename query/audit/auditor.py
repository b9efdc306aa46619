"""The offline auditor: follow a log from a checkpoint it already trusts, trusting no server.

`audit` fetches the newest checkpoint, checks its signature with the verifier key the
auditor pinned, and checks a consistency proof from the last trusted checkpoint to the new
one, against the auditor's own copy of the old root and the new checkpoint's signed root,
never against roots the server reports alongside the proof. Only then is the new checkpoint
stored as trusted. A smaller tree (a rollback) or a proof that does not verify (a fork) is
refused, and the trusted state stays as it was.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec

from ledger.errors import AuditFailed, NoteError
from ledger.log import merkle
from ledger.log.note import Checkpoint, NoteVerifier, open_checkpoint


class TrustedState(msgspec.Struct, forbid_unknown_fields=True):
    """What an auditor keeps between runs: the pinned key and the last trusted checkpoint."""

    verifier_key: str
    origin: str
    tree_size: int
    root_hash: str  # hex
    checkpoint: str  # the signed note, so that it can be shown to a third party


@dataclass(frozen=True, slots=True)
class AuditResult:
    previous_size: int | None
    checkpoint: Checkpoint


def load_state(path: Path) -> TrustedState | None:
    if not path.exists():
        return None
    try:
        return msgspec.json.decode(path.read_bytes(), type=TrustedState)
    except msgspec.MsgspecError as error:
        raise AuditFailed(f"{path} is not an auditor state file: {error}") from None


def save_state(path: Path, state: TrustedState) -> None:
    """Replace the state file atomically, so that a crash never leaves half a state."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "wb") as out:
        out.write(msgspec.json.format(msgspec.json.encode(state)) + b"\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def audit(client: httpx.Client, state_path: Path, verifier_key: str | None = None) -> AuditResult:
    """Advance the trusted checkpoint in `state_path` to the server's newest, or raise."""
    state = load_state(state_path)
    pinned = verifier_key or (state.verifier_key if state is not None else None)
    if pinned is None:
        raise AuditFailed("the first audit needs the log's verifier key (--verifier-key)")
    if state is not None and pinned != state.verifier_key:
        raise AuditFailed("--verifier-key differs from the key pinned in the state file")
    verifier = NoteVerifier.parse(pinned)
    note = _get(client, "/checkpoint").text
    try:
        checkpoint = open_checkpoint(note, verifier, state.origin if state else None)
    except NoteError as error:
        raise AuditFailed(f"the server's checkpoint does not verify: {error}") from None
    if state is not None:
        _check_consistency(client, state, checkpoint)
    save_state(
        state_path,
        TrustedState(
            verifier_key=pinned,
            origin=checkpoint.origin,
            tree_size=checkpoint.size,
            root_hash=checkpoint.root_hash.hex(),
            checkpoint=note,
        ),
    )
    return AuditResult(state.tree_size if state else None, checkpoint)


def _check_consistency(client: httpx.Client, state: TrustedState, new: Checkpoint) -> None:
    old_root = bytes.fromhex(state.root_hash)
    if new.size < state.tree_size:
        raise AuditFailed(
            f"rollback: the server's tree has {new.size} entries, but a checkpoint of "
            f"{state.tree_size} was trusted before"
        )
    if new.size == state.tree_size:
        if new.root_hash != old_root:
            raise AuditFailed(
                f"fork: two signed checkpoints of size {new.size} have different roots "
                f"({state.root_hash} trusted, {new.root_hash.hex()} now)"
            )
        return
    if state.tree_size == 0:
        return  # every tree extends the empty one
    answer = _get(
        client, "/v1/proofs/consistency", params={"from": state.tree_size, "to": new.size}
    )
    try:
        proof = [bytes.fromhex(node) for node in answer.json()["proof"]]
    except (ValueError, KeyError, TypeError) as error:
        raise AuditFailed(f"the consistency proof is malformed: {error}") from None
    if not merkle.verify_consistency(state.tree_size, new.size, old_root, new.root_hash, proof):
        raise AuditFailed(
            f"fork: the tree of size {new.size} does not extend the trusted tree of size "
            f"{state.tree_size}"
        )


def _get(client: httpx.Client, path: str, params: dict[str, int] | None = None) -> httpx.Response:
    answer = client.get(path, params=params)
    if answer.status_code != 200:
        raise AuditFailed(f"GET {path} answered {answer.status_code}: {answer.text[:200]}")
    return answer
