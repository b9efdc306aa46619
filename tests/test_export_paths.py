"""Properties of export file names, partition escaping and manifests."""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import date
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from query.export.manifest import (
    ExportedFile,
    Manifest,
    ManifestError,
    Previous,
    decode_manifest,
    encode_manifest,
)
from query.export.paths import (
    DataPath,
    escape_value,
    manifest_path,
    parse_data_path,
    parse_manifest_name,
    unescape_value,
)
from query.export.schema import TABLES

tenants = st.text(min_size=1, max_size=40)
hashes = st.binary(min_size=32, max_size=32).map(bytes.hex)


@given(tenants)
def test_a_partition_value_round_trips_and_stays_one_path_segment(tenant: str) -> None:
    segment = escape_value(tenant)
    assert unescape_value(segment) == tenant
    assert "/" not in segment
    assert "=" not in segment
    assert segment not in (".", "..")
    assert not segment.startswith(".")


@given(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,62}", fullmatch=True))
def test_a_tenant_slug_is_its_own_path_segment(tenant: str) -> None:
    assert escape_value(tenant) == tenant


data_paths = st.builds(
    DataPath,
    st.sampled_from(list(TABLES)),
    tenants,
    st.dates(date(1970, 1, 1), date(9999, 12, 31)),
    st.integers(1, 10**6 - 1),
    st.integers(0, 10**12 - 1),
)


@given(data_paths)
def test_a_data_path_round_trips(path: DataPath) -> None:
    assert parse_data_path(str(path)) == path


@given(st.text(max_size=120))
def test_parsing_any_text_as_a_data_path_is_refused_or_canonical(text: str) -> None:
    try:
        parsed = parse_data_path(text)
    except ValueError:
        return
    assert str(parsed) == text


@given(st.integers(1, 10**9))
def test_a_manifest_name_round_trips(sequence: int) -> None:
    assert parse_manifest_name(manifest_path(sequence).rsplit("/", 1)[1]) == sequence


def _peaks(size: int) -> st.SearchStrategy[list[str]]:
    return st.lists(hashes, min_size=size.bit_count(), max_size=size.bit_count())


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    sequence = draw(st.integers(1, 10**6 - 1))
    start = draw(st.integers(0, 10**9))
    end = start + draw(st.integers(1, 10**6))
    paths = draw(st.lists(data_paths, max_size=6, unique_by=str))
    return Manifest(
        sequence=sequence,
        origin=draw(st.text(min_size=1, max_size=30)),
        created_at="2026-01-01T00:00:00.000000Z",
        start=start,
        end=end,
        tree_before=draw(_peaks(start)),
        tree_after=draw(_peaks(end)),
        checkpoint=draw(st.text(max_size=200)),
        previous=None if sequence == 1 else Previous(sequence - 1, draw(hashes)),
        consistency=draw(st.lists(hashes, max_size=4)),
        rows=draw(st.dictionaries(st.sampled_from(list(TABLES)), st.integers(0, 10**9))),
        files=[
            ExportedFile(
                path=str(dataclasses.replace(p, sequence=sequence)),
                table=p.table,
                rows=draw(st.integers(0, 10**9)),
                bytes=draw(st.integers(0, 10**12)),
                sha256=draw(hashes),
            )
            for p in {str(dataclasses.replace(p, sequence=sequence)): p for p in paths}.values()
        ],
    )


@given(manifests())
def test_a_manifest_round_trips(manifest: Manifest) -> None:
    assert decode_manifest(encode_manifest(manifest)) == manifest


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.binary(max_size=200))
def test_decoding_any_bytes_fails_only_as_a_manifest_error(data: bytes) -> None:
    with contextlib.suppress(ManifestError):
        decode_manifest(data)


@given(manifests(), st.sampled_from(list(Manifest.__struct_fields__)), json_values)
def test_any_member_changed_to_any_json_fails_only_as_a_manifest_error(
    manifest: Manifest, member: str, value: object
) -> None:
    document = msgspec.to_builtins(manifest)
    document[member] = value
    with contextlib.suppress(ManifestError):
        decode_manifest(msgspec.json.encode(document))


@given(manifests(), st.sampled_from(["start", "end", "tree_after", "previous", "files"]))
def test_a_manifest_out_of_shape_is_refused(manifest: Manifest, member: str) -> None:
    changes: dict[str, dict[str, Any]] = {
        "start": {"start": manifest.end},
        "end": {"end": manifest.start},
        "tree_after": {"tree_after": [*manifest.tree_after, "00" * 32]},
        "previous": {"previous": None if manifest.previous else Previous(0, "00" * 32)},
        "files": {"files": [*manifest.files, *manifest.files[:1]] or [_foreign_file()]},
    }
    data = encode_manifest(msgspec.structs.replace(manifest, **changes[member]))
    try:
        decode_manifest(data)
    except ManifestError:
        return
    raise AssertionError(f"a manifest with a bad {member} was accepted")


def _foreign_file() -> ExportedFile:
    return ExportedFile(
        path="../elsewhere.parquet", table="decisions", rows=0, bytes=0, sha256="0" * 64
    )
