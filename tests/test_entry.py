"""The entry encoding matches docs/log-format.md byte for byte."""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from ledger.log.entry import entry_bytes, entry_leaf_hash, from_micros, rfc3339, to_micros

hashes = st.binary(min_size=32, max_size=32)


@given(
    index=st.integers(0, 2**64 - 1),
    integrated=st.integers(-(2**63), 2**63 - 1),
    prev=hashes,
    digest=hashes,
    tenant=st.text(min_size=1, max_size=64),
)
def test_entry_layout_is_the_documented_one(
    index: int, integrated: int, prev: bytes, digest: bytes, tenant: str
) -> None:
    encoded = entry_bytes(index, integrated, prev, digest, tenant)
    tenant_bytes = tenant.encode()
    # Parsed independently of the module, straight from the table in docs/log-format.md.
    assert encoded[:4] == b"PLE1"
    assert struct.unpack(">Q", encoded[4:12])[0] == index
    assert struct.unpack(">q", encoded[12:20])[0] == integrated
    assert encoded[20:52] == prev
    assert encoded[52:84] == digest
    assert struct.unpack(">H", encoded[84:86])[0] == len(tenant_bytes)
    assert encoded[86:] == tenant_bytes
    assert (
        entry_leaf_hash(index, integrated, prev, digest, tenant)
        == hashlib.sha256(b"\x00" + encoded).digest()
    )


@given(st.datetimes(timezones=st.just(UTC), min_value=datetime(1970, 1, 1)))
def test_micros_round_trip(moment: datetime) -> None:
    assert from_micros(to_micros(moment)) == moment


def test_rfc3339_has_microseconds_and_z() -> None:
    assert rfc3339(1_700_000_000_123_456) == "2023-11-14T22:13:20.123456Z"
