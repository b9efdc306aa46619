"""The bytes of a log entry, and its leaf hash.

An entry commits to the exact stored envelope (by SHA-256), its index, the time it was
integrated, its tenant and the previous entry's leaf hash, which makes the log a hash chain
as well as a Merkle tree. The layout is fixed-width binary so that any verifier can rebuild
it without a JSON canonicalization step (see docs/log-format.md):

    magic      4 bytes   b"PLE1"
    index      8 bytes   unsigned big-endian
    integrated 8 bytes   signed big-endian, microseconds since the Unix epoch (UTC)
    prev_leaf  32 bytes  leaf hash of entry index-1, or 32 zero bytes for index 0
    envelope   32 bytes  SHA-256 of the stored envelope bytes
    tenant     2 bytes   unsigned big-endian length, then that many UTF-8 bytes
"""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, datetime

MAGIC = b"PLE1"
GENESIS_PREV = bytes(32)
# Everything but the tenant bytes; the verifier packs it directly in its hot loop.
ENTRY_HEAD = struct.Struct(">4sQq32s32sH")


def entry_bytes(
    index: int, integrated_us: int, prev_leaf: bytes, envelope_digest: bytes, tenant: str
) -> bytes:
    tenant_bytes = tenant.encode()
    return (
        ENTRY_HEAD.pack(MAGIC, index, integrated_us, prev_leaf, envelope_digest, len(tenant_bytes))
        + tenant_bytes
    )


def entry_leaf_hash(
    index: int, integrated_us: int, prev_leaf: bytes, envelope_digest: bytes, tenant: str
) -> bytes:
    """`SHA-256(0x00 || entry bytes)`: the entry's leaf in the RFC 9162 tree."""
    return hashlib.sha256(
        b"\x00" + entry_bytes(index, integrated_us, prev_leaf, envelope_digest, tenant)
    ).digest()


def to_micros(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return datetime.fromtimestamp(micros // 1_000_000, UTC).replace(microsecond=micros % 1_000_000)


# The Gregorian calendar repeats every 400 years, which are exactly this many microseconds.
_ERA_MICROS = 146_097 * 86_400 * 1_000_000


def rfc3339(micros: int) -> str:
    """`micros` as RFC 3339 in UTC. Total: a time outside the years 1 to 9999 that a
    datetime holds (a record stored before admission bounded `occurred_at`, say) is shifted
    by whole 400-year eras into range and its year shifted back, so it prints exactly."""
    eras = 0
    if not _MIN_MICROS <= micros <= _MAX_MICROS:
        # Into the eras of 2000..2399, well inside the range either way.
        eras = (micros - _Y2000_MICROS) // _ERA_MICROS
        micros -= eras * _ERA_MICROS
    moment = from_micros(micros)
    year = moment.year + 400 * eras
    # Zero-padded by hand: strftime's %Y does not pad years before 1000 on every platform.
    return (
        f"{'-' if year < 0 else ''}{abs(year):04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}Z"
    )


_MIN_MICROS = to_micros(datetime.min.replace(tzinfo=UTC))
_MAX_MICROS = to_micros(datetime.max.replace(tzinfo=UTC))
_Y2000_MICROS = to_micros(datetime(2000, 1, 1, tzinfo=UTC))
