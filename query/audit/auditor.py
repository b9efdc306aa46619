"""The offline auditor: follow a log from a checkpoint it already trusts, trusting no server.

`audit` fetches the newest checkpoint, checks its signature with the verifier key the
auditor pinned, and checks a consistency proof from the last trusted checkpoint to the new
one, against the auditor's own copy of the old root and the new checkpoint's signed root,
never against roots the server reports alongside the proof. Only then is the new checkpoint
stored as trusted. A smaller tree (a rollback) or a proof that does not verify (a fork) is
refused, and the trusted state stays as it was.

With a witness policy (k of these n witness keys, `ledger.witness.policy`), a checkpoint is
trusted only if enough of those witnesses cosigned it: one the log showed only to this
auditor has no witness's cosignature, so a split view needs the witnesses to collude. The
policy is pinned in the state file beside the verifier key, so later runs need not repeat
it, and flags that disagree with it are refused rather than silently weakening it.
`query.audit.published` follows the checkpoints the log published append-only with the
same state file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec

from ledger.errors import AuditFailed, NoteError, WitnessPolicyUnmet
from ledger.log import merkle
from ledger.log.note import Checkpoint, NoteVerifier, open_checkpoint
from ledger.witness.cosignature import Cosigned
from ledger.witness.policy import WitnessPolicy


class PinnedWitnesses(msgspec.Struct, forbid_unknown_fields=True):
    """The auditor's witness policy: `required` of these witness verifier keys."""

    keys: list[str]  # each `name+id+base64(0x04 || key)`, sorted
    required: int


class PublishedSeen(msgspec.Struct, forbid_unknown_fields=True):
    """What `prov audit --from-published` has seen at one publication target."""

    location: str
    # Hex SHA-256 of published checkpoint i's bytes, for every i seen: a later rewrite or
    # deletion of any of them is named. 65 bytes of state per published checkpoint.
    digests: list[str]
    # Published checkpoints 1..linked were each proved consistent with the one before.
    linked: int = 0


class TrustedState(msgspec.Struct, forbid_unknown_fields=True):
    """What an auditor keeps between runs: the pinned key and the last trusted checkpoint."""

    verifier_key: str
    origin: str
    tree_size: int
    root_hash: str  # hex
    checkpoint: str  # the signed note, so that it can be shown to a third party
    witnesses: PinnedWitnesses | None = None
    published: PublishedSeen | None = None

    def trusted_checkpoint(self) -> Checkpoint:
        return Checkpoint(self.origin, self.tree_size, bytes.fromhex(self.root_hash))


@dataclass(frozen=True, slots=True)
class AuditResult:
    previous_size: int | None
    checkpoint: Checkpoint
    policy: WitnessPolicy | None = None
    cosigned: list[Cosigned] = field(default_factory=list)

    def witnesses_line(self) -> str:
        """`, cosigned by 2 of 2 witnesses (a, b)`, or nothing without a policy."""
        return "" if self.policy is None else f", {cosigned_by(self.cosigned, self.policy)}"


def cosigned_by(cosigned: list[Cosigned], policy: WitnessPolicy) -> str:
    """`cosigned by 2 of 3 witnesses (a, b), 2 required`."""
    names = ", ".join(sorted(c.name for c in cosigned))
    text = f"cosigned by {len(cosigned)} of {len(policy.witnesses)} witnesses ({names})"
    if policy.required < len(policy.witnesses):
        text += f", {policy.required} required"
    return text


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


def pinned_verifier(state: TrustedState | None, verifier_key: str | None) -> str:
    """The log key to trust: the one given, which must be the one the state pinned."""
    pinned = verifier_key or (state.verifier_key if state is not None else None)
    if pinned is None:
        raise AuditFailed("the first audit needs the log's verifier key (--verifier-key)")
    if state is not None and pinned != state.verifier_key:
        raise AuditFailed("--verifier-key differs from the key pinned in the state file")
    return pinned


def resolve_policy(
    pinned: PinnedWitnesses | None, keys: Sequence[str] = (), required: int | None = None
) -> tuple[WitnessPolicy | None, PinnedWitnesses | None]:
    """The witness policy to apply and to pin: the one given on the command line (`keys`,
    `required`, default all), else the one pinned. Flags that differ from a pinned policy
    are refused: weakening it must be a deliberate edit of the state file."""
    if not keys:
        if required is not None:
            raise AuditFailed("--witnesses-required needs --witness keys")
        if pinned is None:
            return None, None
        return _parse_policy(pinned.keys, pinned.required, "the pinned witness policy"), pinned
    policy = _parse_policy(list(keys), required, "--witness")
    given = PinnedWitnesses(sorted(w.encode() for w in policy.witnesses), policy.required)
    if pinned is not None and given != pinned:
        held = _parse_policy(pinned.keys, pinned.required, "the pinned witness policy")
        raise AuditFailed(
            f"--witness/--witnesses-required ({_describe(policy)}) differ from the witness "
            f"policy pinned in the state file ({_describe(held)}); give the same, or none"
        )
    return policy, given


def _parse_policy(keys: list[str], required: int | None, what: str) -> WitnessPolicy:
    try:
        return WitnessPolicy.parse(keys, required)
    except NoteError as error:
        raise AuditFailed(f"{what}: {error}") from None


def _describe(policy: WitnessPolicy) -> str:
    names = ", ".join(sorted(w.name for w in policy.witnesses))
    return f"{policy.describe()}: {names}"


def check_note(
    note: str, verifier: NoteVerifier, origin: str | None, policy: WitnessPolicy | None
) -> tuple[Checkpoint, list[Cosigned]]:
    """The checkpoint of `note` if the log signed it (for `origin`) and, with a policy,
    enough of its witnesses cosigned it; `NoteError` or `WitnessPolicyUnmet` otherwise."""
    checkpoint = open_checkpoint(note, verifier, origin)
    return checkpoint, [] if policy is None else policy.check(note, verifier)


def audit(
    client: httpx.Client,
    state_path: Path,
    verifier_key: str | None = None,
    witnesses: Sequence[str] = (),
    witnesses_required: int | None = None,
) -> AuditResult:
    """Advance the trusted checkpoint in `state_path` to the server's newest, or raise."""
    state = load_state(state_path)
    # Settle the key and the policy before asking the server anything.
    pinned_verifier(state, verifier_key)
    resolve_policy(state.witnesses if state else None, witnesses, witnesses_required)
    note = _get(client, "/checkpoint").text
    return advance(state_path, note, client, verifier_key, witnesses, witnesses_required)


def advance(
    state_path: Path,
    note: str,
    client: httpx.Client,
    verifier_key: str | None = None,
    witnesses: Sequence[str] = (),
    witnesses_required: int | None = None,
) -> AuditResult:
    """Trust `note` (the server's checkpoint) if it verifies, meets the witness policy and
    extends the trusted checkpoint (proved with the server's consistency proof)."""
    state = load_state(state_path)
    pinned = pinned_verifier(state, verifier_key)
    policy, pinned_policy = resolve_policy(
        state.witnesses if state else None, witnesses, witnesses_required
    )
    verifier = NoteVerifier.parse(pinned)
    try:
        checkpoint, cosigned = check_note(note, verifier, state.origin if state else None, policy)
    except NoteError as error:
        raise AuditFailed(f"the server's checkpoint does not verify: {error}") from None
    except WitnessPolicyUnmet as error:
        raise WitnessPolicyUnmet(f"the server's checkpoint: {error.detail}") from None
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
            witnesses=pinned_policy,
            published=state.published if state else None,
        ),
    )
    return AuditResult(state.tree_size if state else None, checkpoint, policy, cosigned)


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
    if not extends(client, state.trusted_checkpoint(), new):
        raise AuditFailed(
            f"fork: the tree of size {new.size} does not extend the trusted tree of size "
            f"{state.tree_size}"
        )


def extends(client: httpx.Client, old: Checkpoint, new: Checkpoint) -> bool:
    """Whether `new` extends `old` (old.size <= new.size), by the server's consistency
    proof checked against the two signed roots, never against roots the server reports."""
    if old.size == new.size:
        return old.root_hash == new.root_hash
    if old.size == 0:
        return True  # every tree extends the empty one
    answer = _get(client, "/v1/proofs/consistency", params={"from": old.size, "to": new.size})
    try:
        proof = [bytes.fromhex(node) for node in answer.json()["proof"]]
    except (ValueError, KeyError, TypeError) as error:
        raise AuditFailed(f"the consistency proof is malformed: {error}") from None
    return merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)


def _get(client: httpx.Client, path: str, params: dict[str, int] | None = None) -> httpx.Response:
    answer = client.get(path, params=params)
    if answer.status_code != 200:
        raise AuditFailed(f"GET {path} answered {answer.status_code}: {answer.text[:200]}")
    return answer
