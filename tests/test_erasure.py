"""Erasure as a record, on both engines: a subject's blobs become unreadable everywhere (the
vault, the object store, a copy of the database taken before), the erasure is a signed record
the log verifies and the why-report names, the export never carries the content, and a
low-entropy value can no longer be confirmed by guessing. Refusals name what is wrong."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from alembic import command
from sqlalchemy import Engine, select

from ledger.blobs.digest import digest_of
from ledger.blobs.salted import content_of, salt_of, salted
from ledger.blobs.sealing import associated_data, unseal
from ledger.blobs.stores.filesystem import FilesystemStore
from ledger.blobs.stores.s3 import S3Store
from ledger.blobs.vault import object_name
from ledger.erasure.blob_check import check_blobs
from ledger.erasure.rules import parse_filter
from ledger.errors import (
    BlobErased,
    BlobUnreadable,
    ErasureRefused,
    ErasureRequestInvalid,
    IdConflict,
    LedgerMadeRecord,
    NotFound,
    SubjectUnknown,
)
from ledger.indexes.blob_refs import rebuild_refs
from ledger.indexes.erasures import rebuild_erasures
from ledger.keys.replay_signing import sign_ledger_record
from ledger.ledger import Ledger
from ledger.log.entry import from_micros
from ledger.log.sequencer import now_micros
from ledger.records.erasure import (
    ERASURE_PAYLOAD_TYPE,
    PART_DIGESTS,
    ErasureRecord,
    RetentionRef,
    encode_made,
)
from ledger.storage.db import write_transaction
from ledger.storage.migrate import _alembic_config, migrate
from ledger.storage.schema import blob_objects, blob_refs, blobs, decisions, legal_holds
from query.audit.report_check import verify_report
from query.audit.why import why_report
from query.export.exporter import export_ledger
from query.export.paths import open_location
from tests.conftest import TEST_ORIGIN
from tests.erasure_support import TENANT, days_later, erasure_entries, record_about
from tests.s3_server import SeaweedFS

PAST_FLOOR = 200  # days: past the default floor of 183


def _sealed_copies(ledger: Ledger, tmp_path: Path, names: list[str]) -> dict[str, bytes]:
    """The sealed objects as a backup of the database holds them: on SQLite a copy made
    with VACUUM INTO and read back from the file; on PostgreSQL the raw rows, read now."""
    if ledger.engine.dialect.name == "sqlite":
        backup = tmp_path / "backup.db"
        database = ledger.engine.url.database
        assert database is not None
        source = sqlite3.connect(database)
        try:
            source.execute(f"VACUUM INTO '{backup}'")
        finally:
            source.close()
        with sqlite3.connect(backup) as copy:
            rows = copy.execute("SELECT name, content FROM blob_objects").fetchall()
        return {name: bytes(content) for name, content in rows if name in names}
    with ledger.engine.connect() as connection:
        rows = connection.execute(
            select(blob_objects.c.name, blob_objects.c.content).where(
                blob_objects.c.name.in_(names)
            )
        ).all()
    return {row.name: bytes(row.content) for row in rows}


def _every_key_on_file(ledger: Ledger) -> list[bytes]:
    """Every data key the key file still holds, for any subject of the tenant."""
    path = ledger.subject_keys_file
    assert path is not None
    with sqlite3.connect(path) as keys:
        subjects = [row[0] for row in keys.execute("SELECT subject FROM data_keys")]
    found = [ledger.blobs.keys.current(TENANT, subject) for subject in subjects]
    return [key.key for key in found if key is not None]


def _cells(location_dir: Path) -> list[Any]:
    """Every value of every exported Parquet file."""
    values: list[Any] = []
    for path in location_dir.rglob("*.parquet"):
        for row in pq.read_table(path).to_pylist():
            values += list(row.values())
    return values


def test_erasing_a_subject_leaves_nothing_readable_and_every_proof_standing(
    ledger: Ledger, tmp_path: Path
) -> None:
    alice = record_about(ledger, "alice", 4, seed=11)
    bob = record_about(ledger, "bob", 3, seed=12)
    vault = ledger.blobs
    with ledger.engine.connect() as connection:
        rows = vault.rows(connection, TENANT, alice.blobs)
    names = [object_name(TENANT, digest, row.key_id or "") for digest, row in rows.items()]
    backup = _sealed_copies(ledger, tmp_path, names)
    assert len(backup) == len(alice.blobs) > 0
    before_dir = tmp_path / "export-before"
    export_ledger(ledger, open_location(str(before_dir)))

    view = ledger.erasures.erase_subject(
        TENANT,
        "alice",
        reason="Art. 17 request of 2026-11-30",
        requested_by="test",
        now_us=days_later(PAST_FLOOR),
        request_id="gdpr-1",
    )

    assert (view.state, view.kind, view.subject, view.digests) == (
        "done",
        "subject",
        "alice",
        len(alice.blobs),
    )
    assert ledger.erasures.get(TENANT, "gdpr-1").erased == sorted(alice.blobs)
    for digest, row in rows.items():
        with pytest.raises(BlobErased):
            vault.get(TENANT, digest)
        assert vault.store.get(object_name(TENANT, digest, row.key_id or "")) is None
        assert vault.keys.key(TENANT, "alice", row.key_id or "") is None
    assert vault.keys.current(TENANT, "alice") is None
    # The copy taken before opens under no key the ledger still has.
    keys = _every_key_on_file(ledger)
    assert keys, "bob's key and the tenant's own are still on file"
    for name, sealed in backup.items():
        digest = "sha256:" + name.split("/", 1)[1].split(".", 1)[0]
        for key in keys:
            with pytest.raises(BlobUnreadable):
                unseal(key, sealed, associated_data(TENANT, digest))
    # Another subject's blobs are untouched.
    for digest, content in bob.blobs.items():
        assert vault.get(TENANT, digest) == content

    assert ledger.verify(signatures=True)
    blobs_report = check_blobs(ledger.engine, vault)
    assert blobs_report, blobs_report
    erased = {digest: index for _, digest, index, _ in blobs_report.erased}
    assert erased.keys() == alice.blobs.keys()
    assert set(erased.values()) <= set(view.records)
    assert blobs_report.present == len(bob.blobs)

    with ledger.engine.connect() as connection:
        report = why_report(
            connection, ledger.verifier, ledger.origin, TENANT, alice.ids[0], now_us=now_micros()
        )
    states = report["verification"]["blobs"]
    assert states
    assert all(state["status"] == "erased" for state in states)
    assert {state["erasure"]["request_id"] for state in states} == {"gdpr-1"}
    checked = verify_report(report, ledger.verifier)
    assert checked, checked.failure
    assert any(step.name == "erasures" and "verify" in step.detail for step in checked.steps)
    forged = report | {
        "verification": report["verification"]
        | {"blobs": [states[0] | {"erasure": {**states[0]["erasure"], "request_id": "other"}}]}
    }
    assert not verify_report(forged, ledger.verifier)

    # A later export of the whole range marks the rows erased; neither export carries the
    # content, before or after.
    after_dir = tmp_path / "export-after"
    export_ledger(ledger, open_location(str(after_dir)))
    exported = {
        row["digest"]: row["status"]
        for path in after_dir.rglob("*.parquet")
        if "blobs" in path.relative_to(after_dir).parts
        for row in pq.read_table(path).to_pylist()
    }
    assert {exported[digest] for digest in alice.blobs} == {"erased"}
    assert {exported[digest] for digest in bob.blobs} == {"present"}
    for directory in (before_dir, after_dir):
        cells = _cells(directory)
        for content in alice.blobs.values():
            needles = (content, content_of(content))
            assert not any(
                isinstance(cell, bytes | str)
                and any(
                    (needle if isinstance(cell, bytes) else needle.decode(errors="ignore")) in cell
                    for needle in needles
                    if len(needle) > 16
                )
                for cell in cells
            )


def test_a_guessed_low_entropy_value_cannot_be_confirmed_after_erasure(
    ledger: Ledger, tmp_path: Path
) -> None:
    bands = [f"salary band {band:02d}".encode() for band in range(20)]
    blob = salted(bands[13])
    digest = digest_of(blob)
    vault = ledger.blobs
    vault.put(TENANT, digest, blob, subject="carol", now_us=now_micros())
    with ledger.engine.connect() as connection:
        row = vault.row(connection, TENANT, digest)
    assert row is not None
    assert row.key_id is not None
    [sealed] = _sealed_copies(ledger, tmp_path, [object_name(TENANT, digest, row.key_id)]).values()
    # Before: the stored bytes carry the salt, and the salt confirms the value exactly.
    salt = salt_of(vault.get(TENANT, digest))
    assert salt is not None
    assert [band for band in bands if digest_of(salted(band, salt)) == digest] == [bands[13]]

    # No decision names carol, so no floor holds her blob back.
    ledger.erasures.erase_subject(
        TENANT, "carol", reason="erase", requested_by="test", now_us=now_micros()
    )

    with pytest.raises(BlobErased):
        vault.get(TENANT, digest)
    # Every salt one could reconstruct: none, zeros, and every 32-byte window of the sealed
    # copy a backup kept (the salt is inside it, encrypted).
    salts = [bytes(32)] + [sealed[at : at + 32] for at in range(len(sealed) - 31)]
    guesses = {digest_of(band) for band in bands} | {
        digest_of(salted(band, candidate)) for band in bands for candidate in salts
    }
    assert digest not in guesses


def test_the_floor_refuses_with_its_end_then_a_queued_erasure_runs_once_it_passes(
    ledger: Ledger,
) -> None:
    dave = record_about(ledger, "dave", 2, seed=21)
    now = now_micros()
    with pytest.raises(
        ErasureRefused, match=r"retention floor of 183 days keeps subject 'dave' until"
    ) as refused:
        ledger.erasures.erase_subject(TENANT, "dave", reason="r", requested_by="t", now_us=now)
    assert refused.type.__name__ == "ErasureRefused"
    end = from_micros(now + 183 * 86_400_000_000).date().isoformat()
    assert end in str(refused.value)
    assert erasure_entries(ledger) == 0

    queued = ledger.erasures.erase_subject(
        TENANT, "dave", reason="r", requested_by="t", now_us=now, queue=True, request_id="q-1"
    )
    assert (queued.state, queued.records) == ("queued", [])
    assert queued.not_before is not None
    assert queued.not_before.startswith(end)
    assert ledger.erasures.run_due(days_later(100)) == []
    assert ledger.erasures.get(TENANT, "q-1").state == "queued"
    for digest in dave.blobs:
        assert ledger.blobs.get(TENANT, digest) == dave.blobs[digest]

    ran = ledger.erasures.run_due(days_later(184))
    assert [(view.request_id, view.state) for view in ran] == [("q-1", "done")]
    for digest in dave.blobs:
        with pytest.raises(BlobErased):
            ledger.blobs.get(TENANT, digest)
    assert ledger.erasures.get(TENANT, "q-1").erased == sorted(dave.blobs)


def test_a_hold_blocks_erasure_and_expiry_until_it_is_released(ledger: Ledger) -> None:
    erin = record_about(ledger, "erin", 2, seed=31)
    frank = record_about(ledger, "frank", 2, seed=32)
    rules = ledger.rules
    rules.set_retention(
        TENANT, floor_days=30, expire_after_days=60, set_by="test", now_us=now_micros()
    )
    hold = rules.add_hold(
        TENANT, reason="litigation 2026-17", placed_by="test", now_us=now_micros(), subject="erin"
    )
    assert hold.live
    assert [view.hold_id for view in rules.holds(TENANT)] == [hold.hold_id]

    with pytest.raises(
        ErasureRefused, match=rf"legal hold '{hold.hold_id}' on subject 'erin'.*litigation 2026-17"
    ):
        ledger.erasures.erase_subject(
            TENANT, "erin", reason="r", requested_by="t", now_us=days_later(40)
        )
    queued = ledger.erasures.erase_subject(
        TENANT, "erin", reason="r", requested_by="t", now_us=days_later(40), queue=True
    )
    assert queued.state == "queued"
    assert queued.not_before is None

    # Expiry at 61 days takes frank's content, not erin's (held).
    expired = ledger.erasures.run_due(days_later(61))
    assert [view.kind for view in expired] == ["expiry"]
    assert set(ledger.erasures.get(TENANT, expired[0].request_id).erased or []) >= set(frank.blobs)
    assert not set(ledger.erasures.get(TENANT, expired[0].request_id).erased or []) & set(
        erin.blobs
    )
    for digest in erin.blobs:
        assert ledger.blobs.get(TENANT, digest) == erin.blobs[digest]
    assert ledger.erasures.get(TENANT, queued.request_id).state == "queued"

    released = rules.release_hold(
        TENANT, hold.hold_id, released_by="test", now_us=days_later(62), reason="settled"
    )
    assert not released.live
    assert rules.holds(TENANT) == []
    ran = ledger.erasures.run_due(days_later(62))
    assert queued.request_id in {view.request_id for view in ran}
    for digest in erin.blobs:
        with pytest.raises(BlobErased):
            ledger.blobs.get(TENANT, digest)
    assert ledger.verify(signatures=True)
    assert rules.retention(TENANT).version == 1


def test_a_filter_hold_covers_the_decisions_it_matches(ledger: Ledger) -> None:
    gina = record_about(ledger, "gina", 3, seed=41)
    assert gina.ids
    rules = ledger.rules
    with ledger.engine.connect() as connection:
        types = set(
            connection.execute(
                select(decisions.c.decision_type).where(decisions.c.subject == "gina")
            ).scalars()
        )
    some = sorted(types)[0]
    hold = rules.add_hold(
        TENANT,
        reason="regulator inquiry",
        placed_by="test",
        now_us=now_micros(),
        selected=parse_filter(f"decision_type={some.split('.')[0]}.*"),
    )
    assert hold.filter == f"decision_type={some.split('.')[0]}.*"
    with pytest.raises(ErasureRefused, match="regulator inquiry"):
        ledger.erasures.erase_subject(
            TENANT, "gina", reason="r", requested_by="t", now_us=days_later(PAST_FLOOR)
        )
    with pytest.raises(ErasureRequestInvalid) as bad:
        parse_filter("model=gpt")
    assert bad.value.pointer == "/filter"


def test_blobs_erased_by_name_are_recorded_once_and_held_ones_refused(ledger: Ledger) -> None:
    henry = record_about(ledger, "henry", 1, seed=51)
    first, *rest = sorted(henry.blobs)
    erasures = ledger.erasures
    with pytest.raises(NotFound):
        erasures.erase_blobs(
            TENANT, ["sha256:" + "0" * 64], reason="r", requested_by="t", now_us=now_micros()
        )
    # The floor does not hold back a blob erased by name (a correction), but a hold does.
    view = erasures.erase_blobs(TENANT, [first], reason="r", requested_by="t", now_us=now_micros())
    assert view is not None
    assert (view.kind, view.digests, view.subject) == ("blobs", 1, None)
    assert (
        erasures.erase_blobs(TENANT, [first], reason="r", requested_by="t", now_us=now_micros())
        is None
    )
    assert erasure_entries(ledger) == 1
    if rest:
        ledger.rules.add_hold(
            TENANT, reason="hold", placed_by="t", now_us=now_micros(), subject="henry"
        )
        with pytest.raises(ErasureRefused, match="legal hold"):
            erasures.erase_blobs(TENANT, rest, reason="r", requested_by="t", now_us=now_micros())


def test_refusals_name_what_is_wrong_and_a_rerun_appends_nothing(ledger: Ledger) -> None:
    record_about(ledger, "ivan", 1, seed=61)
    record_about(ledger, "jane", 1, seed=62)
    erasures = ledger.erasures
    later = days_later(PAST_FLOOR)
    with pytest.raises(SubjectUnknown) as unknown:
        erasures.erase_subject(TENANT, "nobody", reason="r", requested_by="t", now_us=later)
    assert unknown.value.kind == "subject-unknown"
    assert unknown.value.pointer == "/subject"
    for asked, pointer in (
        ({"request_id": "bad id!"}, "/request_id"),
        ({"reason": ""}, "/reason"),
        ({"subject": "x" * 300}, "/subject"),
    ):
        arguments: dict[str, Any] = {"subject": "ivan", "reason": "r", "request_id": None}
        arguments |= asked
        subject = arguments.pop("subject")
        with pytest.raises(ErasureRequestInvalid) as bad:
            erasures.erase_subject(TENANT, subject, requested_by="t", now_us=later, **arguments)
        assert bad.value.pointer == pointer

    done = erasures.erase_subject(
        TENANT, "ivan", reason="r", requested_by="t", now_us=later, request_id="same"
    )
    size = ledger.latest_checkpoint().tree_size
    again = erasures.erase_subject(
        TENANT, "ivan", reason="r", requested_by="t", now_us=later, request_id="same"
    )
    assert again == done
    assert ledger.latest_checkpoint().tree_size == size
    with pytest.raises(IdConflict) as conflict:
        erasures.erase_subject(
            TENANT, "jane", reason="r", requested_by="t", now_us=later, request_id="same"
        )
    assert conflict.value.pointer == "/request_id"


def test_many_blobs_are_listed_across_parts_each_marked_by_its_own(ledger: Ledger) -> None:
    count = PART_DIGESTS + 150
    items = [
        (digest_of(content), content, "kate")
        for content in (salted(b"%d" % n) for n in range(count))
    ]
    ledger.blobs.put_many(TENANT, items, now_us=now_micros())
    view = ledger.erasures.erase_subject(
        TENANT, "kate", reason="r", requested_by="t", now_us=now_micros()
    )
    assert len(view.records) == 2
    assert view.digests == count
    assert view.records[1] == view.records[0] + 1
    report = check_blobs(ledger.engine, ledger.blobs)
    assert report
    assert {index for *_, index, _ in report.erased} == set(view.records)
    assert ledger.verify(signatures=True)


def test_a_blob_stored_without_a_subject_is_erased_with_the_subject_that_used_it(
    ledger: Ledger,
) -> None:
    liam = record_about(ledger, "liam", 2, seed=71, stored_as=None)
    other = record_about(ledger, "mia", 1, seed=72, stored_as=None)
    ledger.erasures.erase_subject(
        TENANT, "liam", reason="r", requested_by="t", now_us=days_later(PAST_FLOOR)
    )
    for digest in liam.blobs:
        with pytest.raises(BlobErased):
            ledger.blobs.get(TENANT, digest)
    # The tenant's shared key stays: blobs without a subject of other decisions still read.
    for digest, content in other.blobs.items():
        assert ledger.blobs.get(TENANT, digest) == content


def test_erasure_records_are_never_admitted_from_outside(ledger: Ledger) -> None:
    record_about(ledger, "nora", 1, seed=81)
    signer = ledger.record_signer()
    signer.register(ledger.engine, [TENANT])
    at = from_micros(now_micros())
    record = ErasureRecord(
        id="erasure:forged:1",
        tenant=TENANT,
        service="prov-replay",
        request_id="forged",
        kind="subject",
        subject="nora",
        digests=[],
        requested_by="someone",
        reason="forged",
        requested_at=at,
        erased_at=at,
        retention=RetentionRef(floor_days=0),
    )
    raw = sign_ledger_record(ERASURE_PAYLOAD_TYPE, encode_made(record), TENANT, signer.key)
    [result] = ledger.append([raw])
    assert isinstance(result, LedgerMadeRecord)


def test_reindex_rebuilds_the_erasure_indexes_from_the_log(ledger: Ledger) -> None:
    record_about(ledger, "olga", 2, seed=91)
    ledger.rules.set_retention(
        TENANT, floor_days=0, expire_after_days=None, set_by="t", now_us=now_micros()
    )
    hold = ledger.rules.add_hold(
        TENANT, reason="h", placed_by="t", now_us=now_micros(), subject="someone"
    )
    ledger.rules.release_hold(
        TENANT, hold.hold_id, released_by="t", now_us=now_micros(), reason=None
    )
    ledger.erasures.erase_subject(TENANT, "olga", reason="r", requested_by="t", now_us=now_micros())
    with write_transaction(ledger.engine) as connection:
        rebuilt = rebuild_erasures(connection)
        assert rebuilt.consistent, rebuilt
        assert (rebuilt.erasures, rebuilt.retention, rebuilt.holds) == (1, 1, 2)
        changed, held = rebuild_refs(connection)
        assert changed == 0
        assert held > 0
    with write_transaction(ledger.engine) as connection:
        connection.execute(legal_holds.delete())
        connection.execute(blobs.update().values(erasure_idx=None, erased_us=None))
    with write_transaction(ledger.engine) as connection:
        rebuilt = rebuild_erasures(connection)
    assert rebuilt.missing["legal_holds"]
    assert rebuilt.unmarked
    with write_transaction(ledger.engine) as connection:
        assert rebuild_erasures(connection).consistent
    assert check_blobs(ledger.engine, ledger.blobs).faults == []


def test_s3_loses_the_objects_too(
    engine: Engine, key_path: Path, s3_url: str, seaweedfs: SeaweedFS
) -> None:
    store = S3Store(s3_url, seaweedfs.options())
    ledger = Ledger.init(engine, key_path, TEST_ORIGIN, blob_store=store)
    try:
        rita = record_about(ledger, "rita", 2, seed=121)
        sam = record_about(ledger, "sam", 1, seed=122)
        with ledger.engine.connect() as connection:
            rows = ledger.blobs.rows(connection, TENANT, rita.blobs)
        names = [object_name(TENANT, digest, row.key_id or "") for digest, row in rows.items()]
        assert all(store.get(name) is not None for name in names)
        ledger.erasures.erase_subject(
            TENANT, "rita", reason="r", requested_by="t", now_us=days_later(PAST_FLOOR)
        )
        assert [name for name in names if store.get(name) is not None] == []
        for digest, content in sam.blobs.items():
            assert ledger.blobs.get(TENANT, digest) == content
    finally:
        ledger.pool.close()


def test_the_filesystem_store_loses_the_objects_too(
    engine: Engine, key_path: Path, tmp_path: Path
) -> None:
    root = tmp_path / "objects"
    root.mkdir()
    ledger = Ledger.init(engine, key_path, TEST_ORIGIN, blob_store=FilesystemStore(root))
    try:
        pia = record_about(ledger, "pia", 2, seed=101)
        assert sum(1 for path in root.rglob("*") if path.is_file()) == len(pia.blobs)
        ledger.erasures.erase_subject(
            TENANT, "pia", reason="r", requested_by="t", now_us=days_later(PAST_FLOOR)
        )
        assert [path for path in root.rglob("*") if path.is_file()] == []
    finally:
        ledger.pool.close()
    shutil.rmtree(root)


def test_the_migration_indexes_the_blob_references_of_decisions_already_logged(
    ledger: Ledger,
) -> None:
    quinn = record_about(ledger, "quinn", 3, seed=111)
    with ledger.engine.connect() as connection:
        before = connection.execute(select(blob_refs).order_by(*blob_refs.c)).all()
    assert {row.digest for row in before} == set(quinn.blobs)
    with ledger.engine.begin() as connection:
        command.downgrade(_alembic_config(connection), "0011")
    migrate(ledger.engine)  # upgrades, and backfills the references from the log
    with ledger.engine.connect() as connection:
        after = connection.execute(select(blob_refs).order_by(*blob_refs.c)).all()
    assert after == before


def test_a_hold_on_another_subject_covers_the_blobs_an_erased_subject_references(
    ledger: Ledger,
) -> None:
    # Sam's decisions reference content uploaded for (and sealed under) Tess, who is held.
    record_about(ledger, "sam", 2, seed=41, stored_as="tess")
    hold = ledger.rules.add_hold(
        TENANT, reason="litigation 2026-21", placed_by="test", now_us=now_micros(), subject="tess"
    )
    with pytest.raises(ErasureRefused, match=rf"legal hold '{hold.hold_id}'.*of subject 'sam'"):
        ledger.erasures.erase_subject(
            TENANT, "sam", reason="r", requested_by="t", now_us=days_later(PAST_FLOOR)
        )
    ledger.rules.release_hold(
        TENANT, hold.hold_id, released_by="test", now_us=now_micros(), reason="closed"
    )
    done = ledger.erasures.erase_subject(
        TENANT, "sam", reason="r", requested_by="t", now_us=days_later(PAST_FLOOR)
    )
    assert done.state == "done"
