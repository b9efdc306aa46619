"""`prov export verify` detects tampering: a changed row, file or envelope, a missing file,
a file from another export, a broken manifest chain and a key it does not trust.

Each test alters a fresh copy of one export of a SQLite ledger. Where the manifest lists
a file's digest, the attacker updates it too, so that detection must come from the rows,
the leaves and the signed checkpoint rather than from the file digests.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from msgspec.structs import replace

from ledger.keys.ed25519 import SigningKey
from ledger.ledger import Ledger
from ledger.log.note import NoteSigner
from ledger.storage.db import make_engine
from query.export.exporter import export_ledger
from query.export.manifest import decode_manifest, encode_manifest
from query.export.paths import Location, manifest_path, open_location
from query.export.verify import verify_export
from service.demo.traffic import enroll_demo_principals
from tests.conftest import TEST_ORIGIN
from tests.test_export_helpers import fill


def _ledger(folder: Path, seed: int) -> Ledger:
    """Principal enrollments, then decisions: entries of two kinds."""
    folder.mkdir()
    ledger = Ledger.init(make_engine(str(folder / "l.db")), folder / "l.key", TEST_ORIGIN)
    enroll_demo_principals(ledger, "acme")
    fill(ledger, 30, seed=seed)
    return ledger


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Ledger, Path, Path]:
    """A ledger exported in two increments, and an export of another ledger."""
    base = tmp_path_factory.mktemp("exports")
    ledger = _ledger(base / "ours", seed=21)
    export_ledger(ledger, open_location(str(base / "export")))
    fill(ledger, 12, seed=22)
    export_ledger(ledger, open_location(str(base / "export")))
    other = _ledger(base / "theirs", seed=23)
    export_ledger(other, open_location(str(base / "other")))
    return ledger, base / "export", base / "other"


@pytest.fixture
def ledger(exported: tuple[Ledger, Path, Path]) -> Ledger:
    return exported[0]


@pytest.fixture
def copy(exported: tuple[Ledger, Path, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(exported[1], tmp_path / "export"))


def fault(folder: Path, ledger: Ledger) -> str:
    report = verify_export(open_location(str(folder)), ledger.verifier)
    assert not report, "the tampered export verified"
    assert report.fault is not None
    return report.fault


def files_of(folder: Path, table: str) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in (folder / table).rglob("*.parquet"))


def relist(folder: Path, relative: str) -> None:
    """Update the manifest entry of a rewritten file, as an attacker would."""
    data = (folder / relative).read_bytes()
    sequence = int(relative.rsplit("part-", 1)[1][:6])
    path = folder / manifest_path(sequence)
    manifest = decode_manifest(path.read_bytes())
    files = [
        f
        if f.path != relative
        else replace(
            f,
            rows=pq.read_metadata(folder / relative).num_rows,
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        for f in manifest.files
    ]
    path.write_bytes(encode_manifest(replace(manifest, files=files)))
    if sequence == 1:  # keep the chain: the next manifest names this one's digest
        rechain(folder)


def rechain(folder: Path) -> None:
    second = folder / manifest_path(2)
    manifest = decode_manifest(second.read_bytes())
    digest = hashlib.sha256((folder / manifest_path(1)).read_bytes()).hexdigest()
    assert manifest.previous is not None
    previous = replace(manifest.previous, sha256=digest)
    second.write_bytes(encode_manifest(replace(manifest, previous=previous)))


def rewrite(folder: Path, relative: str, table: pa.Table) -> None:
    pq.write_table(table, folder / relative, compression="zstd")
    relist(folder, relative)


def test_an_untouched_export_verifies(exported: tuple[Ledger, Path, Path]) -> None:
    ledger, folder, _ = exported
    report = verify_export(open_location(str(folder)), ledger.verifier)
    assert report, report.fault
    summary = report.to_json()
    assert summary["exports"] == 2
    assert summary["entries"] == 45
    assert summary["rows"]["decisions"] == 42
    assert summary["rows"]["other_records"] == 3


def test_a_changed_file_fails_its_digest(copy: Path, ledger: Ledger) -> None:
    relative = files_of(copy, "steps")[0]
    table = pq.read_table(copy / relative)
    pq.write_table(table.slice(1), copy / relative)
    assert "SHA-256 is not the one in the manifest" in fault(copy, ledger)


def test_a_tampered_row_is_named(copy: Path, ledger: Ledger) -> None:
    relative = files_of(copy, "decisions")[0]
    table = pq.read_table(copy / relative)
    position = table.schema.get_field_index("cost")
    cost = table.column("cost").to_pylist()
    cost[2] = cost[2] / 2
    rewrite(
        copy,
        relative,
        table.set_column(position, "cost", pa.array(cost, table.schema.field("cost").type)),
    )
    message = fault(copy, ledger)
    assert relative in message
    assert "row 2" in message
    assert "cost" in message


def test_a_tampered_record_payload_is_named(copy: Path, ledger: Ledger) -> None:
    relative = files_of(copy, "other_records")[0]
    table = pq.read_table(copy / relative)
    position = table.schema.get_field_index("payload")
    payloads = [
        p.replace('"kind":"human"', '"kind":"service"') for p in table.column("payload").to_pylist()
    ]
    field = table.schema.field("payload")
    rewrite(copy, relative, table.set_column(position, field, pa.array(payloads, field.type)))
    assert "payload is not what the signed envelope says" in fault(copy, ledger)


def test_a_tampered_child_row_is_named(copy: Path, ledger: Ledger) -> None:
    relative = files_of(copy, "tool_calls")[0]
    table = pq.read_table(copy / relative)
    position = table.schema.get_field_index("name")
    names = pc.utf8_upper(table.column("name"))
    rewrite(copy, relative, table.set_column(position, table.schema.field("name"), names))
    assert "name is not what the signed envelope says" in fault(copy, ledger)


def test_a_dropped_child_row_is_found(copy: Path, ledger: Ledger) -> None:
    relative = files_of(copy, "steps")[0]
    rewrite(copy, relative, pq.read_table(copy / relative).slice(1))
    assert "rows, but the envelopes give" in fault(copy, ledger)


def test_an_altered_envelope_is_found(copy: Path, ledger: Ledger) -> None:
    relative = files_of(copy, "envelopes")[0]
    table = pq.read_table(copy / relative)
    envelopes = table.column("envelope").to_pylist()
    envelopes[0] = envelopes[0].replace(b'"payload":"', b'"payload": "')
    rewrite(
        copy, relative, table.set_column(1, table.schema.field("envelope"), pa.array(envelopes))
    )
    assert "the envelope is missing or altered" in fault(copy, ledger)


def test_a_forged_entry_fails_the_checkpoint(copy: Path, ledger: Ledger) -> None:
    """Rows, leaf and entry bytes made consistent with each other still miss the root."""
    relative = files_of(copy, "decisions")[0]
    table = pq.read_table(copy / relative)
    data = table.column("entry_bytes").to_pylist()
    data[0] = data[0][:12] + bytes([data[0][12] ^ 1]) + data[0][13:]  # integrated_us
    leaves = table.column("leaf_hash").to_pylist()
    leaves[0] = hashlib.sha256(b"\x00" + data[0]).digest()
    table = table.set_column(
        table.schema.get_field_index("entry_bytes"),
        table.schema.field("entry_bytes"),
        pa.array(data),
    )
    table = table.set_column(
        table.schema.get_field_index("leaf_hash"),
        table.schema.field("leaf_hash"),
        pa.array(leaves, pa.binary(32)),
    )
    rewrite(copy, relative, table)
    # integrated_at no longer matches the entry bytes; fixing that too would leave the root.
    assert "integrated_at" in fault(copy, ledger) or "root" in fault(copy, ledger)


def test_a_file_with_other_columns_is_refused(copy: Path, ledger: Ledger) -> None:
    relative = files_of(copy, "decisions")[0]
    table = pq.read_table(copy / relative)
    position = table.schema.get_field_index("entry_bytes")
    blanked = pa.array([None, *table.column("entry_bytes").to_pylist()[1:]], pa.binary())
    rewrite(copy, relative, table.set_column(position, "entry_bytes", blanked))
    assert "the columns are not those of an export" in fault(copy, ledger)


def test_a_missing_file_is_found(copy: Path, ledger: Ledger) -> None:
    relative = files_of(copy, "exposures")[0]
    (copy / relative).unlink()
    assert f"{relative}: missing" in fault(copy, ledger)


def test_a_file_dropped_with_its_listing_leaves_entries_missing(copy: Path, ledger: Ledger) -> None:
    for table in (
        "decisions",
        "dependencies",
        "steps",
        "tool_calls",
        "exposures",
        "blobs",
        "envelopes",
    ):
        for relative in files_of(copy, table)[-1:]:
            (copy / relative).unlink()
    last = copy / manifest_path(2)
    manifest = decode_manifest(last.read_bytes())
    kept = [f for f in manifest.files if (copy / f.path).exists()]
    last.write_bytes(encode_manifest(replace(manifest, files=kept)))
    assert "missing from the export" in fault(copy, ledger)


def test_a_file_from_another_export_is_found(
    copy: Path, ledger: Ledger, exported: tuple[Ledger, Path, Path]
) -> None:
    other = exported[2]
    ours = copy / files_of(copy, "decisions")[0]
    stranger = ours.with_name("part-000002-000000000999.parquet")
    shutil.copy(other / files_of(other, "decisions")[0], stranger)
    assert "no manifest lists this file" in fault(copy, ledger)


def test_a_file_from_another_export_in_place_of_ours_is_found(
    copy: Path, ledger: Ledger, exported: tuple[Ledger, Path, Path]
) -> None:
    other = exported[2]
    ours = files_of(copy, "decisions")[0]
    shutil.copy(other / files_of(other, "decisions")[0], copy / ours)
    assert "SHA-256" in fault(copy, ledger)
    relist(copy, ours)  # even listed with its own digest, its rows are not ours
    assert not verify_export(open_location(str(copy)), ledger.verifier)


def test_a_broken_manifest_chain_is_found(copy: Path, ledger: Ledger) -> None:
    first = copy / manifest_path(1)
    manifest = decode_manifest(first.read_bytes())
    first.write_bytes(encode_manifest(replace(manifest, created_at="2000-01-01T00:00:00Z")))
    assert "does not chain" in fault(copy, ledger)


def test_an_untrusted_key_is_refused(exported: tuple[Ledger, Path, Path]) -> None:
    ledger, folder, _ = exported
    stranger = NoteSigner(ledger.origin, SigningKey.generate()).verifier
    report = verify_export(open_location(str(folder)), stranger)
    assert report.fault is not None
    assert "checkpoint" in report.fault


def test_an_empty_location_is_not_an_export(tmp_path: Path, ledger: Ledger) -> None:
    location: Location = open_location(str(tmp_path / "nothing"))
    assert "no export manifest" in (verify_export(location, ledger.verifier).fault or "")
