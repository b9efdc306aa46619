"""Object names, checked before a store turns one into a path or a key.

A name is `<tenant>/<object>`: two segments of letters, digits, `.`, `_` and `-`, neither
starting with a dot. So no name is `.` or `..`, none holds a separator of its own, and
none can reach outside its tenant's directory or key prefix, whatever a caller passes.
"""

from __future__ import annotations

import re

# 255: the longest file name common filesystems allow, so an object maps to one file.
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}"
_NAME = re.compile(rf"({_SEGMENT})/({_SEGMENT})")


def split_name(name: str) -> tuple[str, str]:
    """The tenant and object parts of `name`; ValueError for any other shape."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise ValueError(f"not an object name (<tenant>/<object>): {name[:80]!r}")
    return match[1], match[2]
