"""Chain files: a delegation chain as text, one base64 token per line, root first.

`prov delegate` writes them and extends them, and a service reads one to attach its chain
to the decisions it records (`ingest.client.delegation`). Blank lines and lines starting
with ``#`` are ignored, so a file may say whose chain it is.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence


def parse_chain(text: str) -> list[bytes]:
    """The tokens of a chain file, root first; ValueError names the line at fault."""
    tokens = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            tokens.append(base64.b64decode(stripped, validate=True))
        except binascii.Error:
            raise ValueError(f"line {number} of the chain is not base64") from None
    return tokens


def format_chain(tokens: Sequence[bytes]) -> str:
    return "".join(base64.b64encode(token).decode() + "\n" for token in tokens)
