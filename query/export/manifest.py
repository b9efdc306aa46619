"""Export manifests: what one export wrote and the signed checkpoint that covers it.

A manifest is the commit point of an export: the data files are written first and the
manifest last, so a file that no manifest lists is left over from an interrupted export
(or was put there by someone else) and is never read by queries.

Each manifest holds:
- the index range `[start, end)` of the log entries it exports;
- `tree_before` and `tree_after`: the compact range (RFC 9162 peaks, largest first) of
  the log at `start` and at `end`. With the leaves in the files they rebuild the root at
  `end`, which must equal the signed checkpoint's; `tree_before` must equal the previous
  manifest's `tree_after`;
- `checkpoint`: the ledger's signed checkpoint note at size `end`;
- `consistency`: the RFC 9162 consistency proof from the previous export's checkpoint to
  this one, for verifiers that hold only checkpoints;
- `previous`: the SHA-256 of the previous manifest's bytes, so the manifests form a chain;
- `files`: every data file with its table, row count, size and SHA-256;
- `format`: which tables and columns the files hold (`query.export.schema.tables_of`).

Parsing is strict about shape and ranges, and every failure is a `ManifestError`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgspec

from ledger.errors import ProvError
from ledger.log import merkle
from query.export.paths import (
    MANIFEST_DIR,
    Location,
    list_files,
    manifest_path,
    parse_data_path,
    parse_manifest_name,
    read_bytes,
)
from query.export.schema import FORMAT, READABLE_FORMATS


class ManifestError(ProvError):
    """A manifest, or the chain of manifests, is malformed."""

    kind = "bad-manifest"
    title = "Export manifest invalid"


class ExportedFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: str
    table: str
    rows: int
    bytes: int
    sha256: str


class Previous(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sequence: int
    sha256: str


class Manifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: str = FORMAT
    sequence: int
    origin: str
    created_at: str
    start: int
    end: int
    tree_before: list[str]
    tree_after: list[str]
    checkpoint: str
    previous: Previous | None
    consistency: list[str]
    rows: dict[str, int]
    files: list[ExportedFile]

    def before(self) -> merkle.CompactRange:
        return merkle.CompactRange(self.start, [bytes.fromhex(h) for h in self.tree_before])

    def after(self) -> merkle.CompactRange:
        return merkle.CompactRange(self.end, [bytes.fromhex(h) for h in self.tree_after])


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Manifest)
_HEX32 = frozenset("0123456789abcdef")


def encode_manifest(manifest: Manifest) -> bytes:
    # Indented: an auditor reads manifests, and `sha256sum` users diff them.
    return msgspec.json.format(_encoder.encode(manifest), indent=2) + b"\n"


def decode_manifest(data: bytes) -> Manifest:
    try:
        manifest = _decoder.decode(data)
    except msgspec.DecodeError as error:
        raise ManifestError(f"the manifest does not parse: {error}") from None
    _check(manifest)
    return manifest


def _is_hash(text: str) -> bool:
    return len(text) == 64 and _HEX32.issuperset(text)


def _check(manifest: Manifest) -> None:
    if manifest.format not in READABLE_FORMATS:
        raise ManifestError(
            f"manifest format {manifest.format!r} is not one of {', '.join(READABLE_FORMATS)}"
        )
    if manifest.sequence < 1 or not 0 <= manifest.start < manifest.end:
        raise ManifestError("manifest sequence or index range is out of bounds")
    hashes = [*manifest.tree_before, *manifest.tree_after, *manifest.consistency]
    if manifest.previous is not None:
        hashes.append(manifest.previous.sha256)
    if not all(_is_hash(h) for h in hashes) or not all(_is_hash(f.sha256) for f in manifest.files):
        raise ManifestError("a hash in the manifest is not 64 lowercase hex digits")
    try:
        manifest.before()
        manifest.after()
    except ValueError as error:
        raise ManifestError(f"manifest tree: {error}") from None
    if (manifest.previous is None) != (manifest.sequence == 1):
        raise ManifestError("only the first manifest has no previous manifest")
    if manifest.previous is not None and manifest.previous.sequence != manifest.sequence - 1:
        raise ManifestError("the previous manifest is not the one before")
    for exported in manifest.files:
        try:
            parsed = parse_data_path(exported.path)
        except ValueError as error:
            raise ManifestError(str(error)) from None
        if parsed.table != exported.table or parsed.sequence != manifest.sequence:
            raise ManifestError(f"{exported.path} is not a {exported.table} file of this export")
        if exported.rows < 0 or exported.bytes < 0:
            raise ManifestError(f"{exported.path}: negative row count or size")
    if len({exported.path for exported in manifest.files}) != len(manifest.files):
        raise ManifestError("the manifest lists a file twice")


@dataclass(frozen=True, slots=True)
class StoredManifest:
    manifest: Manifest
    path: str
    sha256: str


def read_history(location: Location) -> list[StoredManifest]:
    """Every manifest at the location, in sequence order, checked to form one chain:
    sequences 1..n, each naming the digest of the one before and starting where it ended.

    Whether the files and checkpoints hold up is for `prov export verify`.
    """
    names = [path.removeprefix(f"{MANIFEST_DIR}/") for path in list_files(location, MANIFEST_DIR)]
    sequences = sorted(
        sequence for name in names if (sequence := parse_manifest_name(name)) is not None
    )
    if sequences != list(range(1, len(sequences) + 1)):
        raise ManifestError(f"manifest sequence numbers {sequences[:8]} are not 1, 2, 3, …")
    history: list[StoredManifest] = []
    for sequence in sequences:
        path = manifest_path(sequence)
        data = read_bytes(location, path)
        try:
            manifest = decode_manifest(data)
        except ManifestError as error:
            raise ManifestError(f"{path}: {error}") from None
        if manifest.sequence != sequence:
            raise ManifestError(f"{path} holds the manifest of export {manifest.sequence}")
        if history:
            _check_link(history[-1], manifest, path)
        history.append(StoredManifest(manifest, path, hashlib.sha256(data).hexdigest()))
    return history


def _check_link(previous: StoredManifest, manifest: Manifest, path: str) -> None:
    assert manifest.previous is not None  # `_check`: only the first has none
    if manifest.previous.sha256 != previous.sha256:
        raise ManifestError(f"{path} does not chain to {previous.path}: its digest differs")
    if manifest.origin != previous.manifest.origin:
        raise ManifestError(f"{path} is for another log than {previous.path}")
    if (
        manifest.start != previous.manifest.end
        or manifest.tree_before != previous.manifest.tree_after
    ):
        raise ManifestError(f"{path} does not start where {previous.path} ended")
