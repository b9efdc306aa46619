"""`prov audit --from-published`: follow the checkpoints a log published append-only.

The server's checkpoint follower writes each checkpoint it serves to a directory or an S3
prefix under a contiguous sequence number, never overwriting (`ledger.publication`). An
operator who wants to show two auditors two different logs, or take back a checkpoint,
must then rewrite or delete published ones. This reads them all, in order, and refuses
(`AuditFailed`, naming the object; the trusted state stays as it was):

1. a checkpoint seen by an earlier run that is gone or whose bytes changed: the state file
   keeps the SHA-256 of every published checkpoint seen;
2. a gap in the sequence;
3. a checkpoint the log's key did not sign (for the pinned origin), or, with a witness
   policy, a new one or the newest without enough verified cosignatures
   (`WitnessPolicyUnmet`);
4. a tree that shrinks, or two checkpoints of one size with different roots;
5. with `--url`: consecutive checkpoints, and the state's trusted checkpoint, that the
   server's consistency proofs do not link (checked against the signed roots only).
   Without a server only 1 to 4 are checked, and the trusted checkpoint is not moved
   (except on a first run, which trusts the newest published checkpoint as it stands).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ledger.blobs.stores.s3_options import S3Options
from ledger.errors import AuditFailed, NoteError, WitnessPolicyUnmet
from ledger.log.note import Checkpoint, NoteVerifier
from ledger.publication import PublishedCheckpoint, name_of, open_target, read_target
from ledger.witness.cosignature import Cosigned
from ledger.witness.policy import WitnessPolicy
from query.audit.auditor import (
    PublishedSeen,
    TrustedState,
    check_note,
    cosigned_by,
    extends,
    load_state,
    pinned_verifier,
    resolve_policy,
    save_state,
)

# How many missing or rewritten names one refusal lists.
_NAMED = 5


@dataclass(frozen=True, slots=True)
class PublishedAudit:
    location: str
    count: int  # published checkpoints read
    new: int  # of which not seen by an earlier run
    newest: Checkpoint
    newest_name: str
    previous_size: int | None  # the trusted size before this run
    trusted_size: int  # and after it
    consistency_checked: bool  # False without a server to ask for proofs
    policy: WitnessPolicy | None = None
    cosigned: list[Cosigned] = field(default_factory=list)  # on the newest, by the policy

    def summary(self) -> str:
        """The one line `prov audit --from-published` prints on success."""
        head = (
            f"ok: {self.count} published checkpoints at {self.location} ({self.new} new), "
            f"the newest {self.newest_name}: size {self.newest.size}, root "
            f"{self.newest.root_hash.hex()}"
        )
        if not self.consistency_checked:
            head += "; signatures, sequence and roots checked, consistency not checked (no --url)"
            if self.previous_size is None:
                head += f"; first checkpoint trusted (size {self.trusted_size})"
            else:
                head += f"; the trusted checkpoint stays at size {self.trusted_size}"
        elif self.previous_size is None:
            head += ", consistent with each other; first checkpoint trusted"
        else:
            head += f", consistent with each other and with the trusted size {self.previous_size}"
        if self.policy is not None:
            head += f"; the newest {cosigned_by(self.cosigned, self.policy)}"
        return head


def audit_published(
    state_path: Path,
    target: str,
    *,
    s3: S3Options | None = None,
    client: httpx.Client | None = None,
    verifier_key: str | None = None,
    witnesses: Sequence[str] = (),
    witnesses_required: int | None = None,
) -> PublishedAudit:
    """Check every checkpoint published at `target` (a directory or `s3://bucket/prefix`)
    and record them in the state file; `client` reaches the ledger for consistency proofs."""
    state = load_state(state_path)
    pinned = pinned_verifier(state, verifier_key)
    policy, pinned_policy = resolve_policy(
        state.witnesses if state else None, witnesses, witnesses_required
    )
    verifier = NoteVerifier.parse(pinned)
    where = open_target(target, s3)
    seen = state.published if state else None
    if seen is not None and seen.location != where.location:
        raise AuditFailed(
            f"the state file follows the checkpoints published at {seen.location}, not "
            f"{where.location}: use another state file"
        )
    published = read_target(where)
    digests = seen.digests if seen else []
    _check_seen(published, digests, where.location)
    _check_sequence(published, where.location)

    origin = state.origin if state else None
    checkpoints: list[Checkpoint] = []
    cosigned: list[Cosigned] = []
    for item in published:
        # The policy holds for what is new, and for the newest, which becomes trusted.
        applies = item.seq >= len(digests) or item is published[-1]
        checkpoint, cosigned = _open(item, verifier, origin, policy if applies else None)
        origin = checkpoint.origin
        checkpoints.append(checkpoint)
    _check_sizes_and_roots(published, checkpoints, state)

    linked = seen.linked if seen else 0
    if client is not None:
        for position in range(max(1, linked + 1), len(published)):
            older, newer = checkpoints[position - 1], checkpoints[position]
            if not extends(client, older, newer):
                raise AuditFailed(
                    f"published checkpoint {published[position].name} (size {newer.size}) "
                    f"does not extend {published[position - 1].name} (size {older.size}) "
                    "before it: the log forked"
                )
        linked = len(published) - 1
        if state is not None:
            _check_trusted(client, state, published[-1], checkpoints[-1])

    newest, newest_item = checkpoints[-1], published[-1]
    trust_newest = state is None or (client is not None and newest.size > state.tree_size)
    if trust_newest:
        trusted = (newest.origin, newest.size, newest.root_hash.hex(), newest_item.note)
    else:
        assert state is not None
        trusted = (state.origin, state.tree_size, state.root_hash, state.checkpoint)
    save_state(
        state_path,
        TrustedState(
            verifier_key=pinned,
            origin=trusted[0],
            tree_size=trusted[1],
            root_hash=trusted[2],
            checkpoint=trusted[3],
            witnesses=pinned_policy,
            published=PublishedSeen(where.location, [p.digest for p in published], linked),
        ),
    )
    return PublishedAudit(
        location=where.location,
        count=len(published),
        new=len(published) - len(digests),
        newest=newest,
        newest_name=newest_item.name,
        previous_size=state.tree_size if state else None,
        trusted_size=trusted[1],
        consistency_checked=client is not None,
        policy=policy,
        cosigned=cosigned,
    )


def _check_seen(published: list[PublishedCheckpoint], digests: list[str], where: str) -> None:
    """Every checkpoint seen before is still there, byte for byte."""
    present = {item.seq: item.digest for item in published}
    deleted = [name_of(seq) for seq in range(len(digests)) if seq not in present]
    if deleted:
        raise AuditFailed(f"published {_names(deleted)} deleted from {where}")
    rewritten = [name_of(seq) for seq, digest in enumerate(digests) if present.get(seq) != digest]
    if rewritten:
        raise AuditFailed(
            f"published {_names(rewritten)} rewritten at {where}: the bytes differ from "
            "those seen before"
        )


def _names(names: list[str]) -> str:
    """`checkpoint 00…42 was` or `checkpoints 00…42, 00…43 were`, a few at most."""
    shown = ", ".join(names[:_NAMED])
    if len(names) > _NAMED:
        shown += f" and {len(names) - _NAMED} more"
    return f"checkpoint {shown} was" if len(names) == 1 else f"checkpoints {shown} were"


def _check_sequence(published: list[PublishedCheckpoint], where: str) -> None:
    if not published:
        raise AuditFailed(f"no checkpoint is published at {where}")
    for expected, item in enumerate(published):
        if item.seq != expected:
            raise AuditFailed(
                f"published checkpoint {name_of(expected)} is missing from {where}: the "
                f"sequence has a gap before {item.name}"
            )


def _open(
    item: PublishedCheckpoint,
    verifier: NoteVerifier,
    origin: str | None,
    policy: WitnessPolicy | None,
) -> tuple[Checkpoint, list[Cosigned]]:
    try:
        return check_note(item.note, verifier, origin, policy)
    except NoteError as error:
        raise AuditFailed(f"published checkpoint {item.name} does not verify: {error}") from None
    except WitnessPolicyUnmet as error:
        raise WitnessPolicyUnmet(f"published checkpoint {item.name}: {error.detail}") from None


def _check_sizes_and_roots(
    published: list[PublishedCheckpoint], checkpoints: list[Checkpoint], state: TrustedState | None
) -> None:
    """Sizes never go down, and one size has one root, among the published checkpoints and
    the trusted one."""
    roots: dict[int, tuple[bytes, str]] = {}
    if state is not None:
        roots[state.tree_size] = (bytes.fromhex(state.root_hash), "the trusted checkpoint")
    for position, (item, checkpoint) in enumerate(zip(published, checkpoints, strict=True)):
        if position > 0 and checkpoint.size < checkpoints[position - 1].size:
            raise AuditFailed(
                f"published checkpoint {item.name} has size {checkpoint.size}, smaller than "
                f"the {checkpoints[position - 1].size} of {published[position - 1].name} "
                "before it: the published log went back"
            )
        known = roots.setdefault(checkpoint.size, (checkpoint.root_hash, f"published {item.name}"))
        if known[0] != checkpoint.root_hash:
            raise AuditFailed(
                f"published checkpoint {item.name} and {known[1]} both have size "
                f"{checkpoint.size} but different roots: the log forked"
            )


def _check_trusted(
    client: httpx.Client, state: TrustedState, item: PublishedCheckpoint, newest: Checkpoint
) -> None:
    """The trusted checkpoint and the newest published one are on one log, whichever is
    larger (an auditor that also follows the server may be ahead of the publications)."""
    trusted = state.trusted_checkpoint()
    if trusted.size <= newest.size:
        if not extends(client, trusted, newest):
            raise AuditFailed(
                f"published checkpoint {item.name} (size {newest.size}) does not extend the "
                f"trusted checkpoint of size {trusted.size}: the log forked"
            )
    elif not extends(client, newest, trusted):
        raise AuditFailed(
            f"the trusted checkpoint of size {trusted.size} does not extend published "
            f"checkpoint {item.name} (size {newest.size}): the log forked"
        )
