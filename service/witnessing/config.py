"""`PROV_WITNESSES`: the witnesses a ledger asks to cosign its checkpoints.

One entry per witness, separated by commas or whitespace: the witness's verifier key, `@`,
then its submission prefix, e.g.
`w1.example+1a2b3c4d+BKj…=@http://127.0.0.1:7380`. The key is what the ledger checks the
witness's answers with; a cosignature that does not verify under it is never kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ledger.errors import NoteError
from ledger.witness.cosignature import CosignatureVerifier

_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True, slots=True)
class WitnessEndpoint:
    verifier: CosignatureVerifier
    url: str  # the submission prefix; add-checkpoint is POSTed under it

    @property
    def name(self) -> str:
        return self.verifier.name


def parse_witnesses(text: str | None) -> list[WitnessEndpoint]:
    """The configured witnesses; ValueError naming the entry at fault."""
    endpoints: list[WitnessEndpoint] = []
    for entry in _SEPARATORS.split(text or ""):
        if not entry:
            continue
        # The key never holds "@http"; a URL may hold "@" only in its user part.
        key, sep, rest = entry.partition("@http")
        url = "http" + rest
        scheme = urlsplit(url).scheme if sep else ""
        if scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ValueError(f"PROV_WITNESSES entry {entry!r} is not <witness key>@<http(s) URL>")
        try:
            verifier = CosignatureVerifier.parse(key)
        except NoteError as error:
            raise ValueError(f"PROV_WITNESSES entry {entry!r}: {error}") from None
        endpoints.append(WitnessEndpoint(verifier, url.rstrip("/")))
    names = [e.name for e in endpoints]
    if len(set(names)) != len(names):
        raise ValueError("PROV_WITNESSES names a witness more than once")
    keys = [e.verifier.public_key for e in endpoints]
    if len(set(keys)) != len(keys):
        # cosignature/v1 does not sign the name: one key under two names is one witness.
        raise ValueError("PROV_WITNESSES lists one witness key under two names")
    return endpoints


def witness_quorum(endpoints: list[WitnessEndpoint], quorum: int | None) -> int:
    """How many cosignatures a checkpoint needs before `/checkpoint` serves it: all the
    configured witnesses unless `PROV_WITNESS_QUORUM` says fewer; 0 without witnesses."""
    if not endpoints:
        return 0
    if quorum is None:
        return len(endpoints)
    if not 1 <= quorum <= len(endpoints):
        raise ValueError(
            f"PROV_WITNESS_QUORUM must be between 1 and the {len(endpoints)} witnesses configured"
        )
    return quorum
