"""A witness policy: a checkpoint is trusted only when k of these n witnesses cosigned it.

The policy is what an auditor brings, never what the server says: `prov audit` and
`prov verify-report` take the witness keys and the quorum on their command line (or pinned
in the auditor's state), and refuse a checkpoint without enough verified cosignatures.
Cosignatures by keys outside the policy are ignored (C2SP tlog-cosignature).
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.errors import NoteError, WitnessPolicyUnmet
from ledger.log.note import NoteVerifier
from ledger.witness.cosignature import CosignatureVerifier, Cosigned, verified_cosignatures


@dataclass(frozen=True)
class WitnessPolicy:
    """`required` of `witnesses` must have cosigned."""

    witnesses: tuple[CosignatureVerifier, ...]
    required: int

    def __post_init__(self) -> None:
        names = [w.name for w in self.witnesses]
        if len(set(names)) != len(names):
            raise NoteError("a witness policy names each witness once")
        # cosignature/v1 does not sign the witness's name: one key under two names would
        # let a copied cosignature count twice.
        keys = [w.public_key for w in self.witnesses]
        if len(set(keys)) != len(keys):
            raise NoteError("a witness policy lists each witness key once, under one name")
        if not 1 <= self.required <= len(self.witnesses):
            raise NoteError(
                f"a witness policy needs between 1 and {len(self.witnesses)} cosignatures, "
                f"not {self.required}"
            )

    @classmethod
    def parse(cls, keys: list[str], required: int | None = None) -> WitnessPolicy:
        """From witness verifier keys; `required` defaults to all of them."""
        witnesses = tuple(CosignatureVerifier.parse(key) for key in keys)
        return cls(witnesses, len(witnesses) if required is None else required)

    def describe(self) -> str:
        return f"{self.required} of {len(self.witnesses)} witnesses"

    def check(self, note: str, log_verifier: NoteVerifier | None = None) -> list[Cosigned]:
        """The policy's verified cosignatures on `note`, or `WitnessPolicyUnmet`. Given the
        log's key, a policy that counts the log itself as a witness is refused."""
        if log_verifier is not None and any(
            w.public_key == log_verifier.public_key for w in self.witnesses
        ):
            raise WitnessPolicyUnmet(
                "the witness policy lists the log's own key: the log cannot witness itself"
            )
        try:
            cosigned = verified_cosignatures(note, list(self.witnesses))
        except NoteError as error:
            raise WitnessPolicyUnmet(f"the checkpoint's cosignatures: {error}") from None
        if len(cosigned) < self.required:
            have = ", ".join(c.name for c in cosigned) or "none"
            missing = sorted({w.name for w in self.witnesses} - {c.name for c in cosigned})
            raise WitnessPolicyUnmet(
                f"the checkpoint carries {len(cosigned)} verified cosignature(s) ({have}); "
                f"the policy needs {self.describe()} (missing: {', '.join(missing)})"
            )
        return cosigned
