"""A witness policy: a checkpoint is trusted only when k of these n witnesses cosigned it.

The policy is what an auditor brings, never what the server says: `prov audit`,
`prov verify-report` and the SDK take the witness keys and the quorum on their command line
or in their configuration, and refuse a checkpoint without enough verified cosignatures.
Cosignatures by keys outside the policy are ignored (C2SP tlog-cosignature).
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.errors import NoteError, WitnessPolicyUnmet
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

    def check(self, note: str) -> list[Cosigned]:
        """The policy's verified cosignatures on `note`, or `WitnessPolicyUnmet`."""
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
