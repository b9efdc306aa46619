"""What every publication target shares: the names of published checkpoints, the error a
target raises, and the three operations a target offers.

A published checkpoint is the object `checkpoints/<sequence>` under the target, where the
sequence number is 20 decimal digits (every uint64 fits), counted from zero without a
hole. Names sort as numbers do, so a listing is in publication order, and a deleted one
leaves a gap that anyone reading the target sees.
"""

from __future__ import annotations

import re
from typing import Protocol

from ledger.errors import ProvError

FOLDER = "checkpoints"
SEQUENCE_DIGITS = 20
_NAME = re.compile(r"[0-9]{20}")


class PublicationFailed(ProvError):
    """The publication target could not be read or written (unreachable, refused, a
    disk error), or holds an object where a checkpoint note should be."""

    kind = "publication-failed"
    title = "Checkpoint publication failed"


def name_of(sequence: int) -> str:
    """`00000000000000000042` for 42."""
    if not 0 <= sequence < 10**SEQUENCE_DIGITS:
        raise ValueError(f"publication sequence {sequence} is out of range")
    return f"{sequence:0{SEQUENCE_DIGITS}d}"


def sequence_of(name: str) -> int | None:
    """The sequence number a listed name stands for; None for anything else (a temporary
    file, a stray object), which readers ignore."""
    return int(name) if _NAME.fullmatch(name) else None


class Target(Protocol):
    """Where checkpoints are published: a directory or an S3 prefix."""

    @property
    def location(self) -> str:
        """Where it is, for messages."""
        ...

    def create(self, name: str, data: bytes) -> bool:
        """Write `data` as the published checkpoint `name` unless one of that name
        exists: True if written, False if it existed (and is left as it was)."""
        ...

    def read(self, name: str) -> bytes | None:
        """The bytes of published checkpoint `name`, None if there is none."""
        ...

    def names(self) -> list[str]:
        """The names of the published checkpoints present, in no particular order."""
        ...
