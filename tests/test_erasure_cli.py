"""`prov erase`, `prov erasures`, `prov expire`, `prov retention`, `prov hold`, `prov verify
--blobs` and `prov reindex` as a user runs them, with the clock set by `PROV_NOW`; and kill -9
in the middle of an erasure, which leaves the whole erasure or none of it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
import pytest
from sqlalchemy import select, update

from ledger.blobs.stores.filesystem import FilesystemStore
from ledger.errors import BlobErased
from ledger.ledger import Ledger
from ledger.log.entry import rfc3339
from ledger.storage.db import make_engine, write_transaction
from ledger.storage.schema import blob_objects, blobs, erasures
from tests.conftest import POSTGRES_ADMIN_URL, TEST_ORIGIN
from tests.erasure_support import TENANT, days_later, erasure_entries, record_about
from tests.support import PROV, Run

LATER = rfc3339(days_later(200))


def run(args: list[str], *, db: str, key: Path, env: dict[str, str] | None = None) -> Run:
    """`prov ARGS` in its own process, with `env` (PROV_NOW, PROV_BLOB_STORE) on top of an
    environment without PROV_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PROV_")}
    done = subprocess.run(
        [PROV, *args, "--db", db, "--key-file", str(key)],
        capture_output=True,
        env=clean | (env or {}),
        timeout=300,
        check=False,
    )
    return Run(done.returncode, done.stdout.decode(), done.stderr.decode())


def _one_line_failure(result: Run, *fragments: str) -> None:
    assert result.code == 1, result
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def local(db_url: str, tmp_path: Path) -> Iterator[tuple[Ledger, str, Path]]:
    key = tmp_path / "ledger.key"
    ledger = Ledger.init(make_engine(db_url), key, TEST_ORIGIN)
    try:
        yield ledger, db_url, key
    finally:
        ledger.close()


def test_the_commands_erase_queue_hold_and_verify(local: tuple[Ledger, str, Path]) -> None:
    ledger, db, key = local
    alice = record_about(ledger, "alice", 2, seed=1)
    bob = record_about(ledger, "bob", 2, seed=2)
    later = {"PROV_NOW": LATER}

    _one_line_failure(
        run(["erase", "--subject", "alice", "--reason", "r"], db=db, key=key),
        "erasure-refused",
        "retention floor of 183 days",
        "until 20",
    )
    _one_line_failure(
        run(["erase", "--subject", "nobody", "--reason", "r"], db=db, key=key), "subject-unknown"
    )
    bad_clock = run(
        ["erase", "--subject", "alice", "--reason", "r"], db=db, key=key, env={"PROV_NOW": "soon"}
    )
    assert bad_clock.code == 2
    assert "PROV_NOW" in bad_clock.err
    queued = run(
        ["erase", "--subject", "alice", "--reason", "r", "--queue", "--request-id", "q1"],
        db=db,
        key=key,
    )
    assert queued.code == 0, queued.err
    assert [line["state"] for line in queued.json_lines()] == ["queued"]
    assert run(["expire"], db=db, key=key).out == ""  # not yet
    expired = run(["expire"], db=db, key=key, env=later)
    assert expired.code == 0, expired.err
    assert [(line["request_id"], line["state"]) for line in expired.json_lines()] == [
        ("q1", "done")
    ]
    shown = run(["erasures", "q1"], db=db, key=key).json_lines()
    assert shown[0]["erased"] == sorted(alice.blobs)
    assert [line["request_id"] for line in run(["erasures"], db=db, key=key).json_lines()] == ["q1"]

    held = run(
        ["hold", "add", "--subject", "bob", "--reason", "litigation", "--hold-id", "h1"],
        db=db,
        key=key,
    )
    assert held.code == 0, held.err
    assert [line["hold_id"] for line in run(["hold", "list"], db=db, key=key).json_lines()] == [
        "h1"
    ]
    _one_line_failure(
        run(["erase", "--subject", "bob", "--reason", "r"], db=db, key=key, env=later),
        "erasure-refused",
        "'h1'",
        "litigation",
    )
    assert run(["hold", "release", "h1"], db=db, key=key).code == 0
    assert run(["hold", "list"], db=db, key=key).out == ""
    erased = run(["erase", "--subject", "bob", "--reason", "r"], db=db, key=key, env=later)
    assert [line["state"] for line in erased.json_lines()] == ["done"], erased.err

    _one_line_failure(
        run(["retention", "set", "--floor-days", "10", "--expire-after-days", "5"], db=db, key=key),
        "erasure-request-invalid",
    )
    assert run(["retention", "show"], db=db, key=key).json_lines()[0]["floor_days"] == 183
    rule = run(
        ["retention", "set", "--floor-days", "10", "--expire-after-days", "20"], db=db, key=key
    )
    assert rule.json_lines()[0]["version"] == 1
    assert run(["retention", "show"], db=db, key=key).json_lines()[0]["expire_after_days"] == 20

    verified = run(["verify", "--signatures", "--blobs"], db=db, key=key)
    assert verified.code == 0, verified.err
    erased_lines = [line for line in verified.out.splitlines() if line.startswith("erased: ")]
    assert {line.split()[2] for line in erased_lines} == set(alice.blobs) | set(bob.blobs)
    assert all(" by entry " in line for line in erased_lines)
    checked = run(["reindex", "--check"], db=db, key=key)
    assert checked.code == 0, checked.err
    assert "erasure indexes" in checked.out


def test_verify_blobs_names_an_altered_object_unreadable_never_an_erased_one(
    local: tuple[Ledger, str, Path],
) -> None:
    ledger, db, key = local
    carol = record_about(ledger, "carol", 1, seed=3)
    dave = record_about(ledger, "dave", 1, seed=4)
    ledger.erasures.erase_subject(
        TENANT, "carol", reason="r", requested_by="t", now_us=days_later(200)
    )
    altered = sorted(dave.blobs)[0]
    with ledger.engine.connect() as connection:
        row = ledger.blobs.row(connection, TENANT, altered)
    assert row is not None
    name = f"{TENANT}/{altered.removeprefix('sha256:')}.{row.key_id}"
    with write_transaction(ledger.engine) as connection:
        sealed = connection.execute(
            select(blob_objects.c.content).where(blob_objects.c.name == name)
        ).scalar_one()
        flipped = bytes([sealed[0] ^ 1]) + bytes(sealed[1:])
        connection.execute(
            update(blob_objects).where(blob_objects.c.name == name).values(content=flipped)
        )
    verified = run(["verify", "--blobs"], db=db, key=key)
    assert verified.code == 1
    assert f"unreadable: {TENANT} {altered}" in verified.out
    assert "unreadable" not in " ".join(
        line for line in verified.out.splitlines() if any(d in line for d in carol.blobs)
    )
    assert sum(line.startswith("erased: ") for line in verified.out.splitlines()) == len(
        carol.blobs
    )


# --- kill -9 ----------------------------------------------------------------------------------

BIG = 700  # decisions about one subject: about a thousand blobs, two erasure records


def _copy_database(db: str, tmp: Path, name: str) -> str:
    """A copy of the ledger's database under `tmp`/`name` (a file, or a PostgreSQL database
    made from it as a template)."""
    if "://" not in db:
        target = tmp / name / "ledger.db"
        target.parent.mkdir()
        for suffix in ("", "-wal"):
            if Path(db + suffix).exists():
                shutil.copyfile(db + suffix, str(target) + suffix)
        return str(target)
    copy = f"prov_test_{uuid.uuid4().hex[:16]}"
    source = db.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{source}"')
    return f"{db.rsplit('/', 1)[0]}/{copy}"


def _drop_database(db: str) -> None:
    if "://" in db:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db.rsplit("/", 1)[1]}" WITH (FORCE)')


@pytest.mark.slow
def test_kill_9_during_an_erasure_leaves_all_of_it_or_none_and_a_rerun_completes_it(
    db_url: str, tmp_path: Path
) -> None:
    template = tmp_path / "template"
    template.mkdir()
    key = template / "ledger.key"
    objects = template / "objects"
    objects.mkdir()
    ledger = Ledger.init(make_engine(db_url), key, TEST_ORIGIN, blob_store=FilesystemStore(objects))
    big = record_about(ledger, "big", BIG, seed=9)
    ledger.close()
    args = ["erase", "--subject", "big", "--reason", "r", "--request-id", "k1"]
    outcomes = []
    # The first run is not killed: its length places the kills of the others, at fractions
    # of it, and one more is killed the moment its records are committed.
    length = None
    for attempt, when in enumerate((None, 0.2, 0.6, 0.9, "committed")):
        place = tmp_path / f"run-{attempt}"
        shutil.copytree(template, place)
        db = _copy_database(db_url, tmp_path, f"db-{attempt}")
        env = {"PROV_NOW": LATER, "PROV_BLOB_STORE": str(place / "objects")}
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PROV_")}
        started = time.monotonic()
        process = subprocess.Popen(
            [PROV, *args, "--db", db, "--key-file", str(place / "ledger.key")],
            env=clean | env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if when is None:
            assert process.wait(timeout=120) == 0
            length = time.monotonic() - started
        elif when == "committed":
            _kill_once_recorded(process, db)
        else:
            assert length is not None
            time.sleep(length * float(when))
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        copy = Ledger.open(
            make_engine(db), place / "ledger.key", blob_store=FilesystemStore(place / "objects")
        )
        try:
            outcomes.append(_check_all_or_nothing(copy, big.blobs))
            rerun = run(args, db=db, key=place / "ledger.key", env=env)
            assert rerun.code == 0, rerun.err
            assert msgspec.json.decode(rerun.out)["state"] == "done"
            # The records of one request, once: two parts of at most 1000 digests.
            assert erasure_entries(copy) == -(-len(big.blobs) // 1000)
            assert [path for path in (place / "objects").rglob("*") if path.is_file()] == []
            assert copy.blobs.keys.current(TENANT, "big") is None
            verified = run(["verify", "--signatures", "--blobs"], db=db, key=place / "ledger.key")
            assert verified.code == 0, verified.out + verified.err
        finally:
            copy.close()
            _drop_database(db)
    # Each kill fell before the commit, after it, or once all was done; each left it whole.
    assert outcomes[0] == "done"
    assert set(outcomes) <= {"nothing", "recorded", "done"}
    assert "nothing" in outcomes
    assert outcomes[-1] == "recorded"


def _kill_once_recorded(process: subprocess.Popen[bytes], db: str) -> None:
    """SIGKILL the process as soon as its erasure is committed (before, if it never is)."""
    engine = make_engine(db)
    try:
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            with engine.connect() as connection:
                state = connection.execute(select(erasures.c.state)).scalar()
            if state is not None:
                break
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
    finally:
        engine.dispose()


def _check_all_or_nothing(ledger: Ledger, contents: dict[str, bytes]) -> str:
    """Either no erasure record and every blob readable, or the records and every blob
    erased; which of the two, and whether the erasure was complete."""
    with ledger.engine.connect() as connection:
        state = connection.execute(select(erasures.c.state)).scalar()
        marked = (
            connection.execute(select(blobs.c.digest).where(blobs.c.erased_us.is_not(None)))
            .scalars()
            .all()
        )
    if erasure_entries(ledger) == 0:
        assert state is None
        assert marked == []
        for digest, content in contents.items():
            assert ledger.blobs.get(TENANT, digest) == content
        return "nothing"
    assert state in ("recorded", "done")
    assert set(marked) == set(contents)
    for digest in contents:
        with pytest.raises(BlobErased):
            ledger.blobs.get(TENANT, digest)
    return str(state)
